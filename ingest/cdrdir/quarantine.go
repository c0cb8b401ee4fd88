package cdrdir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"fleetmeter/record"
)

// ReasonFile is the name of the structured reason beside a failed file in its
// quarantine folder failed/<name>/.
const ReasonFile = "reason.json"

// Reason is the content of a quarantine folder's reason.json. The file name travels as
// a JSON string, so no byte of it (a newline, a colon) can forge a field.
type Reason struct {
	File   string `json:"file"`   // the file's name in the drop directory
	Data   string `json:"data"`   // the data file's name in this folder: File, or see dataName
	Path   string `json:"path"`   // where it was read
	Size   int64  `json:"size"`   // bytes
	SHA256 string `json:"sha256"` // of the whole file, hex
	Reason string `json:"reason"` // rejection reason: cdr_damaged, cdr_too_large
	Detail string `json:"detail"`
	// Offset is the byte offset of the damage, absent when unknown (a file too large to
	// read); Record the 1-based CDR it hit, absent outside a CDR (a file header).
	Offset          *int64 `json:"offset,omitempty"`
	Record          *int   `json:"record,omitempty"`
	RecordsProduced int    `json:"records_produced"` // usage records acknowledged before the move
	Rejections      int    `json:"rejections"`       // rejections acknowledged, the damage report included
	FailedAt        string `json:"failed_at"`        // RFC 3339, UTC
}

// reason builds the reason.json content of a failed result.
func (r *Result) reason(now time.Time) Reason {
	name := filepath.Base(r.Path)
	q := Reason{File: name, Data: dataName(name), Path: r.Path, Size: r.Bytes, SHA256: r.SHA256,
		RecordsProduced: r.Records, Rejections: r.Rejected, FailedAt: now.UTC().Format(time.RFC3339)}
	if r.Damage != nil {
		off := r.Damage.Offset
		q.Reason, q.Detail, q.Offset = record.ReasonCDRDamaged, r.Damage.Error(), &off
		if rec := r.Damage.Record; rec > 0 {
			q.Record = &rec
		}
	} else {
		q.Reason = record.ReasonCDRTooLarge
		q.Detail = "file exceeds cdr.max_file_bytes; not read"
	}
	return q
}

// dataName is the data file's name inside its quarantine folder: its own name, unless
// that is the reason file's.
func dataName(name string) string {
	if name == ReasonFile {
		return name + ".data"
	}
	return name
}

// quarantinePrefix marks a quarantine folder being assembled in failed/ (hidden, and
// ending in tmpSuffix like every temporary of this package).
const quarantinePrefix = ".quarantine-"

// quarantine moves a failed file into a folder of its own, failed/<name>/ (or
// failed/<name>.1/, ... when that exists: nothing is ever overwritten), holding the data
// file and reason.json. Steps, and what a crash after each leaves:
//  1. a hidden folder failed/.quarantine-*.cdrdir.tmp gets reason.json (synced): the data
//     file is still in the drop directory; the next start removes the folder and the
//     restart sends the file again;
//  2. the data file is renamed into it: it left the drop directory, and the next start
//     (recoverQuarantines) finishes step 3 for it;
//  3. the folder is renamed to its free name: done. The directory syncs carry the renames
//     over a power loss.
//
// The file is in exactly one place at every moment, and never in failed/ without its
// reason.
func (r *Result) quarantine(failed string) error {
	_ = recoverQuarantines(failed) // about other files; the collector logs them at start
	name := filepath.Base(r.Path)
	b, err := json.MarshalIndent(r.reason(time.Now()), "", "  ")
	if err != nil {
		return fmt.Errorf("quarantine %s: %w", r.Path, err)
	}
	tmp, err := os.MkdirTemp(failed, quarantinePrefix+"*"+tmpSuffix)
	if err != nil {
		return fmt.Errorf("quarantine %s: %w", r.Path, err)
	}
	if err := writeSynced(filepath.Join(tmp, ReasonFile), append(b, '\n')); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("quarantine %s: %w", r.Path, err)
	}
	if err := os.Rename(r.Path, filepath.Join(tmp, dataName(name))); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("quarantine %s: %w", r.Path, err)
	}
	// From here on the data file is out of the drop directory: failures leave it in tmp,
	// which recoverQuarantines finishes.
	dst, err := settle(tmp, failed, name)
	if err != nil {
		return fmt.Errorf("quarantine %s: %w", r.Path, err)
	}
	r.MovedTo = filepath.Join(dst, dataName(name))
	return syncDir(filepath.Dir(r.Path))
}

// settle renames the assembled folder tmp to a free name for name in failed and syncs
// both levels.
func settle(tmp, failed, name string) (string, error) {
	if err := syncDir(tmp); err != nil {
		return "", err
	}
	dst, err := freeDir(failed, name)
	if err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", err
	}
	return dst, syncDir(failed)
}

// freeDir returns a path in dir for name that nothing holds: name, else name.1, name.2,
// ... Only one collector moves into dir (see README), so checking then renaming does not
// race. Names stay within 255 bytes (the common NAME_MAX) by shortening name.
func freeDir(dir, name string) (string, error) {
	for n := 0; n < 1_000_000; n++ {
		suffix := ""
		if n > 0 {
			suffix = "." + strconv.Itoa(n)
		}
		base := name
		if len(base)+len(suffix) > 255 {
			base = base[:255-len(suffix)]
		}
		p := filepath.Join(dir, base+suffix)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			return p, nil
		} else if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("no free name for %s in %s", name, dir)
}

// recoverQuarantines finishes what a crash left in failed: a quarantine folder holding
// its data file is settled under a free name; one holding only its reason is removed
// (its data file is still in the drop directory and will be sent again). Folders it
// cannot handle are reported and left alone.
func recoverQuarantines(failed string) []error {
	ents, err := os.ReadDir(failed)
	if err != nil {
		return []error{fmt.Errorf("recover %s: %w", failed, err)}
	}
	var errs []error
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), quarantinePrefix) || !strings.HasSuffix(e.Name(), tmpSuffix) {
			continue
		}
		tmp := filepath.Join(failed, e.Name())
		b, rerr := os.ReadFile(filepath.Join(tmp, ReasonFile))
		var q Reason
		if rerr == nil {
			rerr = json.Unmarshal(b, &q)
		}
		if rerr == nil && q.File != "" && q.Data == dataName(q.File) {
			if _, err := os.Lstat(filepath.Join(tmp, q.Data)); err == nil {
				if _, err := settle(tmp, failed, q.File); err != nil {
					errs = append(errs, fmt.Errorf("recover %s: %w", tmp, err))
				}
				continue
			}
		}
		if err := removeIfNoData(tmp); err != nil {
			errs = append(errs, fmt.Errorf("recover %s: %w", tmp, err))
		}
	}
	return errs
}

// removeIfNoData removes a quarantine folder that holds nothing but its reason file (or
// less); anything else in it is kept for the operator.
func removeIfNoData(tmp string) error {
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if n := e.Name(); n != ReasonFile && !strings.HasSuffix(n, tmpSuffix) {
			return fmt.Errorf("holds %s but no readable %s: left for the operator", n, ReasonFile)
		}
	}
	return os.RemoveAll(tmp)
}

// writeSynced creates path with b and syncs it.
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
