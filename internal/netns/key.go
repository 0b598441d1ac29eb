package netns

import (
	"fmt"
	"os"
	"syscall"
)

// Key identifies a network namespace: the device and inode of its nsfs
// file. The same namespace is reachable through many paths (every process
// in it, bind mounts), all with the same Key.
type Key struct {
	Dev, Ino uint64
}

// String is the namespace's inode number, the netns label of a namespace
// without a /run/netns name.
func (k Key) String() string { return fmt.Sprint(k.Ino) }

// KeyOf stats an nsfs path such as /proc/PID/ns/net or /run/netns/NAME.
func KeyOf(path string) (Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Key{}, err
	}
	return keyOfInfo(fi)
}

func keyOfInfo(fi os.FileInfo) (Key, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Key{}, fmt.Errorf("%s: no stat data", fi.Name())
	}
	return Key{Dev: st.Dev, Ino: st.Ino}, nil
}
