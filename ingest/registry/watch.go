package registry

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// Live holds the registry in force. Collectors read it per request with Load; Watch (or
// Store) replaces it atomically, so a request sees either the old or the new registry,
// never a mix.
type Live struct {
	p atomic.Pointer[Registry]
}

// NewLive returns a Live holding r (nil: no registry, every device admitted).
func NewLive(r *Registry) *Live {
	l := &Live{}
	l.p.Store(r)
	return l
}

// LoadLive loads path and returns a Live holding it.
func LoadLive(path string) (*Live, error) {
	r, err := Load(path)
	if err != nil {
		return nil, err
	}
	return NewLive(r), nil
}

// Load returns the registry in force; nil when none was set.
func (l *Live) Load() *Registry {
	if l == nil {
		return nil
	}
	return l.p.Load()
}

// Store replaces the registry in force.
func (l *Live) Store(r *Registry) { l.p.Store(r) }

// Watch polls path every interval until ctx ends and stores each valid new version in l.
// An invalid version is refused: onError gets the error and the registry in force stays.
// onChange (may be nil) gets every stored version. It returns ctx's error.
func (l *Live) Watch(ctx context.Context, path string, interval time.Duration, onChange func(*Registry), onError func(error)) error {
	stamp := ""
	if r := l.Load(); r != nil && r.File() == path {
		stamp = r.Stamp()
	}
	return watch(ctx, path, interval, stamp, func(r *Registry) {
		l.Store(r)
		if onChange != nil {
			onChange(r)
		}
	}, onError)
}

// Watch polls path every interval until ctx ends and calls onChange with each valid new
// version of the file; an invalid version goes to onError (the caller keeps its registry).
// A version is new when the file's size, modification time or inode changed and its
// content differs from the last version seen (valid or not), so an unchanged rewrite
// costs one read and a failed version is reported once. The first poll happens after
// one interval: the caller loaded the file already. It returns ctx's error.
func Watch(ctx context.Context, path string, interval time.Duration, onChange func(*Registry), onError func(error)) error {
	return watch(ctx, path, interval, "", onChange, onError)
}

// watch is Watch knowing the stamp of the caller's version ("" reads it at the start).
func watch(ctx context.Context, path string, interval time.Duration, stamp string, onChange func(*Registry), onError func(error)) error {
	if interval <= 0 {
		return fmt.Errorf("registry: watch %s: interval must be positive, got %v", path, interval)
	}
	if onError == nil {
		onError = func(error) {}
	}
	w := watcher{path: path, stamp: stamp}
	if stamp == "" {
		w.seen() // take the current version as the caller's
	} // else: the first poll reads the file and compares it with the caller's stamp

	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		data, changed, err := w.poll()
		if err != nil {
			onError(err)
			continue
		}
		if !changed {
			continue
		}
		r, err := Parse(path, data)
		if err != nil {
			onError(fmt.Errorf("registry: reload refused, keeping the registry in force: %w", err))
			continue
		}
		onChange(r)
	}
}

type watcher struct {
	path    string
	size    int64
	mod     time.Time
	sys     any
	stamp   string
	statErr string // last stat error reported, so a missing file is reported once per cause
}

// seen records the current stat and content as already handled.
func (w *watcher) seen() {
	if fi, err := os.Stat(w.path); err == nil {
		w.size, w.mod, w.sys = fi.Size(), fi.ModTime(), inode(fi)
	}
	if data, err := os.ReadFile(w.path); err == nil {
		w.stamp = stampOf(data)
	}
}

// poll returns the file's content when it changed since the last poll.
func (w *watcher) poll() ([]byte, bool, error) {
	fi, err := os.Stat(w.path)
	if err != nil {
		if err.Error() == w.statErr {
			return nil, false, nil
		}
		w.statErr = err.Error()
		return nil, false, fmt.Errorf("registry: watch: %w (keeping the registry in force)", err)
	}
	w.statErr = ""
	if fi.Size() == w.size && fi.ModTime().Equal(w.mod) && inode(fi) == w.sys {
		return nil, false, nil
	}
	data, err := os.ReadFile(w.path)
	if err != nil {
		return nil, false, fmt.Errorf("registry: watch: %w (keeping the registry in force)", err)
	}
	w.size, w.mod, w.sys = fi.Size(), fi.ModTime(), inode(fi)
	st := stampOf(data)
	if st == w.stamp {
		return nil, false, nil
	}
	w.stamp = st
	return data, true, nil
}
