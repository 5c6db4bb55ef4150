package admin

import (
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestUpstreamsEndpoint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	be := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) { rc.SetBodyString("ok") }}
	go be.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = be.Shutdown() })
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close()

	cfg := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "" }
access_log: { enabled: false }
upstreams:
  api:
    targets: [%q, {addr: %q, weight: 2}]
    balance: p2c
    health: { path: /, interval: 20ms, timeout: 100ms, unhealthy_threshold: 1 }
  demo: { kind: echo }
routes: [ { name: r, upstream: api } ]
`, ln.Addr().String(), deadAddr)
	_, addr, _, _ := startEngineAdmin(t, cfg, Options{})

	type target struct {
		Address   string `json:"address"`
		Weight    int    `json:"weight"`
		State     string `json:"state"`
		InFlight  *int64 `json:"in_flight"`
		EWMA      string `json:"ewma_latency"`
		LastCheck *struct {
			OK     bool   `json:"ok"`
			Status int    `json:"status"`
			Error  string `json:"error"`
		} `json:"last_check"`
	}
	var got []struct {
		Name    string   `json:"name"`
		Balance string   `json:"balance"`
		Targets []target `json:"targets"`
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		status, body := do(t, "GET", "http://"+addr+"/upstreams", "")
		if status != 200 {
			t.Fatalf("GET /upstreams: %d %s", status, body)
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		if len(got) == 1 && len(got[0].Targets) == 2 && got[0].Targets[0].LastCheck != nil && got[0].Targets[1].LastCheck != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checks reported: %s", body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got[0].Name != "api" || got[0].Balance != "p2c" {
		t.Errorf("upstream %q balance %q, want api p2c (the echo upstream has no targets to list)", got[0].Name, got[0].Balance)
	}
	states := map[string]target{}
	for _, tg := range got[0].Targets {
		states[tg.Address] = tg
	}
	live, gone := states[ln.Addr().String()], states[deadAddr]
	if live.State != "healthy" || !live.LastCheck.OK || live.LastCheck.Status != 200 || live.InFlight == nil || live.Weight != 1 {
		t.Errorf("live target = %+v", live)
	}
	if gone.State != "unhealthy" || gone.LastCheck.OK || gone.LastCheck.Error == "" || gone.Weight != 2 {
		t.Errorf("dead target = %+v", gone)
	}
}
