module example.com/compileerr

go 1.25.0

require github.com/kilnci/kiln v0.9.0
