package economy

import (
	"sync"
	"time"
)

// tokenCache remembers the execution tokens Authenticate found valid, so that
// an agent's calls do not each read the database to learn who is calling.
//
// Ending an execution (finishTx, interruptTx) or an agent (die) forgets its
// tokens inside the transaction that does it and leaves a tombstone: for
// tombstoneFor afterwards no token of that execution or agent is cached
// again, so a lookup that read the database just before the change committed
// cannot put the token back. (If that transaction rolls back, the token is
// merely read from the database for a while.) A cached token also stops at
// its deadline.
//
// Executions can end in another process sharing the database (a runner on
// another machine, the scheduler closing a lost runner's executions); such an
// end cannot reach this cache, so with a shared database an entry is trusted
// for at most maxAge and then read again. With SQLite every change happens in
// this process and maxAge is 0: until the deadline.
type tokenCache struct {
	maxAge time.Duration

	mu     sync.Mutex
	byHash map[string]cachedToken
	byExec map[string]string // execution id → token hash
	// ended holds tombstones of executions and agents ("agent:" + id), with
	// when they were laid (wall clock, whatever clock the economy runs on).
	ended map[string]time.Time
	swept time.Time
}

type cachedToken struct {
	p     Principal
	until time.Time // valid while now ≤ until
}

const (
	// maxCachedTokens bounds the cache; when full it starts again empty
	// (only running executions have valid tokens, so it rarely fills).
	maxCachedTokens = 100_000
	// tombstoneFor outlasts any transaction that ends an execution.
	tombstoneFor = time.Minute
)

func newTokenCache(maxAge time.Duration) *tokenCache {
	return &tokenCache{maxAge: maxAge, byHash: map[string]cachedToken{}, byExec: map[string]string{},
		ended: map[string]time.Time{}}
}

// get returns the principal of a cached, still valid token.
func (c *tokenCache) get(hash string, now time.Time) (Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.byHash[hash]
	if !ok {
		return Principal{}, false
	}
	if now.After(t.until) {
		delete(c.byHash, hash)
		delete(c.byExec, t.p.ExecutionID)
		return Principal{}, false
	}
	return t.p, true
}

// put caches a token the database showed valid at now until deadline,
// unless its execution or agent ended since.
func (c *tokenCache) put(hash string, p Principal, deadline, now time.Time) {
	until := deadline
	if c.maxAge > 0 && now.Add(c.maxAge).Before(until) {
		until = now.Add(c.maxAge)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweep(time.Now())
	if _, ok := c.ended[p.ExecutionID]; ok {
		return
	}
	if _, ok := c.ended["agent:"+p.AgentID]; ok {
		return
	}
	if len(c.byHash) >= maxCachedTokens {
		clear(c.byHash)
		clear(c.byExec)
	}
	c.byHash[hash] = cachedToken{p: p, until: until}
	c.byExec[p.ExecutionID] = hash
}

// sweep drops tombstones older than tombstoneFor, at most once a second.
func (c *tokenCache) sweep(now time.Time) {
	if now.Sub(c.swept) < time.Second {
		return
	}
	c.swept = now
	for k, t := range c.ended {
		if now.Sub(t) > tombstoneFor {
			delete(c.ended, k)
		}
	}
}

// forgetExecution drops the token of an execution that is ending.
func (c *tokenCache) forgetExecution(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended[id] = time.Now()
	if h, ok := c.byExec[id]; ok {
		delete(c.byHash, h)
		delete(c.byExec, id)
	}
}

// forgetAgent drops every token of an agent that is dying.
func (c *tokenCache) forgetAgent(agentID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended["agent:"+agentID] = time.Now()
	for h, t := range c.byHash {
		if t.p.AgentID == agentID {
			delete(c.byHash, h)
			delete(c.byExec, t.p.ExecutionID)
		}
	}
}
