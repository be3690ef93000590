//go:build unix

package worker

import "golang.org/x/sys/unix"

// freeDisk returns the bytes available to this user in dir's file system.
func freeDisk(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}
