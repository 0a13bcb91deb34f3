package runtime

import (
	"context"
	"fmt"
	"sync"

	"github.com/bpagents/bpagents/internal/store"
)

// LocalLocker is a store.Locker for a database only this process uses
// (SQLite): named locks held in memory, so that schedulers in one process
// still elect exactly one leader.
type LocalLocker struct {
	mu   sync.Mutex
	held map[string]bool
}

var _ store.Locker = (*LocalLocker)(nil)

// TryLock implements store.Locker.
func (l *LocalLocker) TryLock(ctx context.Context, name string) (store.SessionLock, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[name] {
		return nil, fmt.Errorf("lock %s: %w", name, store.ErrLocked)
	}
	if l.held == nil {
		l.held = map[string]bool{}
	}
	l.held[name] = true
	return &localLock{owner: l, name: name}, nil
}

type localLock struct {
	owner *LocalLocker
	name  string
	once  sync.Once
}

func (l *localLock) Check(ctx context.Context) error { return ctx.Err() }

func (l *localLock) Unlock(ctx context.Context) error {
	l.once.Do(func() {
		l.owner.mu.Lock()
		delete(l.owner.held, l.name)
		l.owner.mu.Unlock()
	})
	return nil
}
