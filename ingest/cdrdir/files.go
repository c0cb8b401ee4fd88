package cdrdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Eligible reports whether a file name may be taken at all: it matches pattern and is not
// hidden (a leading '.') or marked in progress (.tmp, .part), the names writers such as
// rsync and the CHF itself use until they rename a file into place.
func Eligible(name, pattern string) bool {
	if name == "" || name[0] == '.' || strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, ".part") {
		return false
	}
	ok, err := filepath.Match(pattern, name)
	return ok && err == nil
}

// ListFiles returns the eligible regular files directly in dir, sorted by name.
func ListFiles(dir, pattern string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && Eligible(e.Name(), pattern) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// Dest says where Process moves a file once its records are acknowledged.
type Dest struct {
	Done   string // undamaged files
	Failed string // damaged files, each in a folder <name>/ with reason.json
}

// DestFor is the default Dest for files of dir: dir/done and dir/failed.
func DestFor(dir string) Dest {
	return Dest{Done: filepath.Join(dir, "done"), Failed: filepath.Join(dir, "failed")}
}

// freeName returns a path in dir for name that no file holds: name itself, else name with
// ".1", ".2", ... before its extension, so a second file of the same name never overwrites
// the first one's done/ copy. Only one collector moves into dir (see README), so checking
// then renaming does not race.
func freeName(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return p, nil
	} else if err != nil {
		return "", err
	}
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for n := 1; n < 1_000_000; n++ {
		p = filepath.Join(dir, base+"."+strconv.Itoa(n)+ext)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			return p, nil
		} else if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("no free name for %s in %s", name, dir)
}

// moveInto renames src into dir under a free name and makes the rename durable: the
// rename itself is atomic (the file is in exactly one of the two directories whatever
// happens), the directory fsyncs carry it over a power loss.
func moveInto(src, dir string) (string, error) {
	dst, err := freeName(dir, filepath.Base(src))
	if err != nil {
		return "", fmt.Errorf("move %s: %w", src, err)
	}
	if err := os.Rename(src, dst); err != nil {
		return "", fmt.Errorf("move %s: %w", src, err)
	}
	if err := syncDir(dir); err != nil {
		return dst, err
	}
	return dst, syncDir(filepath.Dir(src))
}

// tmpSuffix marks this package's temporary files; a crash can leave them behind and
// the next start removes them.
const tmpSuffix = ".cdrdir.tmp"

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// removeTemps deletes the temporary files a crash left (the startup probe). Quarantine
// folders in progress are directories: recoverQuarantines handles them.
func removeTemps(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, ".") && strings.HasSuffix(n, tmpSuffix) {
			os.Remove(filepath.Join(dir, n))
		}
	}
}
