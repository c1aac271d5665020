package media

import (
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"
)

// validatedAddrs is the part of a leased socket that knows which sources
// ICE has validated: the remote address of a selected candidate pair of a
// session on the port. Only those become the session's remote addresses;
// packets from any other source are counted as unvalidated, so a stranger
// spraying the port cannot change what the diagnosis shows.
type validatedAddrs struct {
	mu sync.Mutex
	// set maps each validated source to the sessions that validated it;
	// replaced, never modified, so the read goroutine reads it unlocked.
	set         atomic.Pointer[map[netip.AddrPort]map[string]struct{}]
	unvalidated atomic.Uint64
	lastValid   netip.AddrPort // read goroutine only: the common case, one lookup saved
}

// countValidated runs on the read goroutine for every packet.
func (v *validatedAddrs) countValidated(from netip.AddrPort) {
	if from == v.lastValid && from.IsValid() {
		return
	}
	if m := v.set.Load(); m != nil {
		if _, ok := (*m)[from]; ok {
			v.lastValid = from
			return
		}
	}
	v.unvalidated.Add(1)
}

// validate records that ICE validated from for session id. It reports
// whether from was new for that session.
func (v *validatedAddrs) validate(id string, from netip.AddrPort) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	next := map[netip.AddrPort]map[string]struct{}{}
	if m := v.set.Load(); m != nil {
		next = maps.Clone(*m)
	}
	ids := maps.Clone(next[from])
	if ids == nil {
		ids = map[string]struct{}{}
	}
	if _, ok := ids[id]; ok {
		return false
	}
	ids[id] = struct{}{}
	next[from] = ids
	v.set.Store(&next)
	return true
}

// forgetValidated drops what session id validated, when it leaves the port.
// (lastValid may still name one of them: it only saves a lookup for the
// packets of a source that was validated a moment ago.)
func (v *validatedAddrs) forgetValidated(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	m := v.set.Load()
	if m == nil {
		return
	}
	next := make(map[netip.AddrPort]map[string]struct{}, len(*m))
	for a, ids := range *m {
		if _, ok := ids[id]; !ok {
			next[a] = ids
			continue
		}
		if len(ids) > 1 {
			rest := maps.Clone(ids)
			delete(rest, id)
			next[a] = rest
		}
	}
	v.set.Store(&next)
}

// Validate records that ICE validated from (the remote address of the
// session's selected candidate pair) and reports whether it is new.
func (l *portLease) Validate(from netip.AddrPort) bool {
	return l.conn.validate(l.sessionID, from)
}
