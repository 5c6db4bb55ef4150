package balance

import (
	"fmt"
	"sync"
)

// Registry keeps one upstream's targets across reloads, so that a target whose address stays in
// the config keeps its in-flight count, latency estimate and health. Keep one Registry per
// upstream (in the engine's store of state that survives reloads): weights are per upstream, so
// two upstreams naming the same address must not share a Target.
//
// The Registry holds exactly the latest target list. A target dropped from the config is
// forgotten at once; snapshots still draining keep their own pointers to it, so its requests
// end normally, and an address that comes back later starts fresh.
type Registry struct {
	mu      sync.Mutex
	targets map[string]*Target
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{targets: make(map[string]*Target)}
}

// Targets returns the targets for addrs, in the same order, reusing the *Target of every address
// the registry already holds and updating its weight. weights is either nil (every weight 1) or
// parallel to addrs. On error the registry is left as it was, so a failed reload changes nothing.
//
// Changing the weight of a reused target does not disturb a balancer already built on it:
// balancers read weights once, in New.
func (r *Registry) Targets(addrs []string, weights []int) ([]*Target, error) {
	if weights != nil && len(weights) != len(addrs) {
		return nil, fmt.Errorf("register targets: %d weights for %d addresses", len(weights), len(addrs))
	}
	seen := make(map[string]struct{}, len(addrs))
	for i, a := range addrs {
		if a == "" {
			return nil, fmt.Errorf("register target %d: empty address", i)
		}
		if _, dup := seen[a]; dup {
			return nil, fmt.Errorf("register target %q: %w", a, ErrDuplicateTarget)
		}
		seen[a] = struct{}{}
		if weights != nil {
			if err := checkWeight(weights[i]); err != nil {
				return nil, fmt.Errorf("register target %q: %w", a, err)
			}
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Target, len(addrs))
	next := make(map[string]*Target, len(addrs))
	for i, a := range addrs {
		w := 1
		if weights != nil {
			w = weights[i]
		}
		t := r.targets[a]
		if t == nil {
			t = NewTarget(a, w)
		} else {
			t.weight.Store(int32(w))
		}
		out[i] = t
		next[a] = t
	}
	r.targets = next
	return out, nil
}

// Lookup returns the current target for addr, for health checkers and the admin API.
func (r *Registry) Lookup(addr string) (*Target, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.targets[addr]
	return t, ok
}

// Len is the number of targets in the latest list.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.targets)
}
