package chserver

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// LoadOrCreatePassword returns the password kept in path, creating the file (mode 0600,
// 256 random bits as base32 text) when there is none, so a server restarted on the same data keeps
// the password its clients were given. A file others may read is refused, not used.
func LoadOrCreatePassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		st, err := os.Stat(path)
		if err != nil {
			return "", err
		}
		if st.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("%s: mode %v lets others read the ClickHouse password; want 0600", path, st.Mode().Perm())
		}
		pw := strings.TrimSpace(string(b))
		if pw == "" {
			return "", fmt.Errorf("%s: empty; remove it to have a new password generated", path)
		}
		return pw, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	pw := rand.Text() + rand.Text() // 2 x 128 bits, base32
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(pw+"\n"), 0o600); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o600); err != nil { // WriteFile keeps an existing file's mode
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return pw, nil
}
