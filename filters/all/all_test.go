package all

import (
	"slices"
	"testing"

	"github.com/weir-gateway/weir/core/filter"
)

func TestRegistered(t *testing.T) {
	names := filter.Names()
	for _, want := range []string{"acl", "apikey", "basicauth", "cors", "extauth", "headers", "ipfilter", "jwt", "request-id", "respond", "rewrite"} {
		if !slices.Contains(names, want) {
			t.Errorf("filter %q is not registered (have %v)", want, names)
		}
	}
}
