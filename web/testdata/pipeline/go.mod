module example.com/dashboard

go 1.25.0

require github.com/kilnci/kiln v0.1.0
