package config

import (
	"strings"
	"testing"
)

// TestValidateAdminListener: the admin API reloads the gateway and shows its config, so off
// loopback it needs a token unless the operator opts out by name.
func TestValidateAdminListener(t *testing.T) {
	const noToken = `is not a loopback address and server.admin_token is empty`
	tests := []struct {
		name  string
		admin string
		token string
		hosts []string
		insec bool
		want  string // "" when valid
	}{
		{"loopback v4", "127.0.0.1:9901", "", nil, false, ""},
		{"loopback v4 other", "127.0.0.2:9901", "", nil, false, ""},
		{"loopback v6", "[::1]:9901", "", nil, false, ""},
		{"localhost", "localhost:9901", "", nil, false, ""},
		{"localhost upper case", "LOCALHOST:9901", "", nil, false, ""},
		{"disabled", "", "", nil, false, ""},
		{"all v4 interfaces", "0.0.0.0:9901", "", nil, false, `server.admin: "0.0.0.0:9901" ` + noToken},
		{"all interfaces", ":9901", "", nil, false, `server.admin: ":9901" ` + noToken},
		{"all v6 interfaces", "[::]:9901", "", nil, false, noToken},
		{"lan address", "10.1.2.3:9901", "", nil, false, noToken},
		{"name that is not localhost", "admin.internal:9901", "", nil, false, noToken},
		{"localhost look-alike", "localhost.evil.example:9901", "", nil, false, noToken},
		{"v4-mapped public", "[::ffff:10.1.2.3]:9901", "", nil, false, noToken},
		{"error names the opt-in and the token variable", "0.0.0.0:9901", "", nil, false,
			"set server.admin_token (better: $WEIR_SERVER_ADMIN_TOKEN), or server.admin_insecure: true"},
		{"with token", "0.0.0.0:9901", "t0ken", nil, false, ""},
		{"explicitly insecure", "0.0.0.0:9901", "", nil, true, ""},
		{"admin hosts", "127.0.0.1:9901", "", []string{"weir-admin.internal", "10.0.0.5", "::1"}, false, ""},
		{"admin host with port", "127.0.0.1:9901", "", []string{"a.internal:9901"}, false,
			`server.admin_hosts[0]: "a.internal:9901" has a port`},
		{"admin host wildcard", "127.0.0.1:9901", "", []string{"*.internal"}, false, `server.admin_hosts[0]: "*.internal": wildcards`},
		{"admin host url", "127.0.0.1:9901", "", []string{"http://a.internal"}, false, `is not a host name`},
		{"admin host empty", "127.0.0.1:9901", "", []string{""}, false, `server.admin_hosts[0]: is empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			c.Server.Admin, c.Server.AdminToken, c.Server.AdminHosts, c.Server.AdminInsecure = tt.admin, tt.token, tt.hosts, tt.insec
			err := Validate(c, nil)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate = %v, want valid", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestAdminInsecureFromFile: the opt-in is a real key of the file and of the environment.
func TestAdminInsecureFromFile(t *testing.T) {
	const src = `
server: { admin: "0.0.0.0:9901" }
upstreams: { u: { kind: echo } }
routes: [ { name: r, upstream: u } ]
`
	if _, err := Parse("weir.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), "weir.yaml:2: server.admin:") {
		t.Errorf("Parse = %v, want the error located at server.admin", err)
	}
	if _, err := Parse("weir.yaml", []byte(strings.Replace(src, "}", ", admin_insecure: true }", 1))); err != nil {
		t.Errorf("with admin_insecure: %v", err)
	}
	t.Setenv("WEIR_SERVER_ADMIN_INSECURE", "true")
	if _, err := Parse("weir.yaml", []byte(src)); err != nil {
		t.Errorf("with WEIR_SERVER_ADMIN_INSECURE=true: %v", err)
	}
}

func TestLoopbackHost(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true}, {"LocalHost", true}, {"127.0.0.1", true}, {"127.255.0.9", true}, {"::1", true},
		{"::ffff:127.0.0.1", true},
		{"", false}, {"0.0.0.0", false}, {"::", false}, {"10.0.0.1", false}, {"localhost.", false},
		{"127.0.0.1.evil.example", false}, {"localhost.evil.example", false}, {"127.1", false}, {"0x7f.0.0.1", false},
	}
	for _, tt := range tests {
		if got := LoopbackHost(tt.host); got != tt.want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}
