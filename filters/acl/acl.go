// Package acl implements the "acl" filter: it lets a request through by the groups of the
// consumer an auth filter before it identified (allow and deny lists), refusing with 403, and
// with 401 when no auth filter identified anyone.
package acl

import (
	"errors"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// Filter checks the consumer's groups. It is immutable after New and safe for concurrent use.
type Filter struct {
	// decisions count verdicts in weir_auth_decisions_total (README.md, Metrics).
	decisions telemetry.AuthDecisions
	allow     []string
	deny      []string
}

// Reasons for the access log; static, so a refusal allocates nothing.
var (
	errNoConsumer = errors.New("acl: no authenticated consumer (put an auth filter before acl)")
	errDenied     = errors.New("acl: consumer is in a denied group")
	errNotAllowed = errors.New("acl: consumer is in no allowed group")
)

// OnRequest refuses a request without a consumer (401: the caller must authenticate first),
// then one whose consumer is in a denied group, then, when allow is set, one in no allowed
// group (403). Deny is checked first, so it wins over allow.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	st := f.decide(c)
	f.decisions.Count(st == filter.Continue)
	return st
}

func (f *Filter) decide(c *filter.Ctx) filter.Status {
	k := c.Consumer()
	if k == nil {
		return c.Fail(401, errNoConsumer)
	}
	for _, g := range f.deny {
		if k.InGroup(g) {
			return c.Fail(403, errDenied)
		}
	}
	if len(f.allow) == 0 {
		return filter.Continue
	}
	for _, g := range f.allow {
		if k.InGroup(g) {
			return filter.Continue
		}
	}
	return c.Fail(403, errNotAllowed)
}

// OnResponse does nothing.
func (f *Filter) OnResponse(*filter.Ctx) {}
