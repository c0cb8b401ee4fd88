package rules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"time"
)

func contentHash(files []string, datas [][]byte) string {
	h := sha256.New()
	for i, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(datas[i]))
		h.Write(datas[i])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Watch polls path (a file or directory, as for Load) every interval until ctx ends. It
// first loads the rules and reports them to onChange (or the problem to onError); after
// that, whenever a file's mtime or size changes, it reads the files and, if their content
// differs from the last version seen, validates them (a change is acted on once it has
// been stable for one interval). Only a valid set reaches onChange,
// so the caller swaps it in (Engine.SetRules) knowing it compiled; an invalid change is
// refused and reported once to onError while the previous rules stay in force.
func Watch(ctx context.Context, path string, interval time.Duration, onChange func(*Set), onError func(error)) {
	var lastStat, pending, lastHash string
	first := true
	check := func() {
		files, err := tariffFiles(path)
		if err != nil {
			if lastHash != "missing" {
				lastHash, lastStat = "missing", ""
				onError(fmt.Errorf("reload rules: %w", err))
			}
			return
		}
		st := statKey(files)
		if st != "" && st == lastStat {
			return
		}
		// Debounce: act once the files look the same on two polls in a row, so an editor
		// writing in place is not caught with half a file.
		if !first && (st == "" || st != pending) {
			pending = st
			return
		}
		first = false
		lastStat = st
		datas := make([][]byte, len(files))
		for i, f := range files {
			if datas[i], err = os.ReadFile(f); err != nil {
				lastStat = "" // retry next tick
				onError(fmt.Errorf("reload rules: %w", err))
				return
			}
		}
		h := contentHash(files, datas)
		if h == lastHash {
			return
		}
		lastHash = h
		set, err := build(files, datas)
		if err != nil {
			onError(fmt.Errorf("reload rules: refused, previous rules stay in force: %w", err))
			return
		}
		onChange(set)
	}
	check()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			check()
		}
	}
}

func statKey(files []string) string {
	b := make([]byte, 0, 64*len(files))
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return "" // changed under us: force a read
		}
		b = fmt.Appendf(b, "%s\x00%d\x00%d\x00", f, fi.ModTime().UnixNano(), fi.Size())
	}
	return string(b)
}
