package engine

import (
	"encoding/hex"
	"fmt"
	"maps"
	"net/textproto"
	"slices"
	"strings"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
)

// buildConsumers indexes the config's consumers for the auth filters of one snapshot. Every
// consumer's Headers start with X-Consumer-Name and, when it has groups, X-Consumer-Groups,
// then its own metadata headers sorted by name: the terminal step sends exactly that list. A
// config without consumers gives nil.
func buildConsumers(cfg *config.Config) (*filter.Consumers, error) {
	if len(cfg.Consumers) == 0 {
		return nil, nil
	}
	list := make([]*filter.Consumer, 0, len(cfg.Consumers))
	for i, kc := range cfg.Consumers {
		k := &filter.Consumer{Name: kc.Name, Groups: slices.Clone(kc.Groups)}
		k.Headers = append(k.Headers, [2]string{config.ConsumerNameHeader, kc.Name})
		if len(kc.Groups) > 0 {
			k.Headers = append(k.Headers, [2]string{config.ConsumerGroupsHeader, strings.Join(kc.Groups, ",")})
		}
		for _, n := range slices.Sorted(maps.Keys(kc.Headers)) {
			k.Headers = append(k.Headers, [2]string{textproto.CanonicalMIMEHeaderKey(n), kc.Headers[n]})
		}
		for j, a := range kc.Credentials.APIKeys {
			var sum [32]byte
			if n, err := hex.Decode(sum[:], []byte(a.Digest)); err != nil || n != len(sum) {
				// Validate refuses such a config; reaching here means it was built in code.
				return nil, fmt.Errorf("consumers[%d].credentials.apikeys[%d]: no valid key digest", i, j)
			}
			k.APIKeys = append(k.APIKeys, sum)
		}
		for _, b := range kc.Credentials.Basic {
			k.Basic = append(k.Basic, filter.BasicUser{User: b.User, Hash: []byte(b.Bcrypt)})
		}
		for _, t := range kc.Credentials.JWT {
			k.JWT = append(k.JWT, filter.JWTSubject{Issuer: t.Issuer, Subject: t.Subject})
		}
		list = append(list, k)
	}
	return filter.NewConsumers(list)
}

// withConsumer wraps a route's terminal step: when an auth filter identified the caller, the
// upstream request carries the consumer's headers (see buildConsumers), set just before
// forwarding so that no filter in between can change what they say.
func withConsumer(next func(*filter.Ctx)) func(*filter.Ctx) {
	if next == nil {
		return nil
	}
	return (&consumerTerminal{next: next}).Forward
}

// consumerTerminal is a route's terminal step behind withConsumer.
type consumerTerminal struct{ next func(*filter.Ctx) }

// Forward sets the authenticated consumer's headers, then runs the route's terminal step.
func (t *consumerTerminal) Forward(c *filter.Ctx) {
	setConsumer(c)
	t.next(c)
}

// setConsumer sets the authenticated consumer's headers on the upstream request.
func setConsumer(c *filter.Ctx) {
	if k := c.Consumer(); k != nil {
		h := &c.Request.Header
		for _, kv := range k.Headers {
			h.Set(kv[0], kv[1])
		}
	}
}
