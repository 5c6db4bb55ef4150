package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// gcraScript is GCRA for every limit of one key in one call, so a decision costs one round
// trip and several gateways sharing the Redis see one limit. Times are microseconds from
// Redis's own clock (TIME): every gateway then measures against the same clock, and a
// gateway whose clock drifts cannot hand out extra requests. Lua numbers are doubles, exact
// to 2^53 µs (285 years), and intervals need not be whole microseconds.
//
// KEYS[1] is the key's hash; ARGV holds, per limit, its interval and tolerance in µs. The
// arrival times live in a Redis hash (fields "1".."n") that expires once the key is idle.
// It returns {allowed, remaining1, reset1, retry1, remaining2, ...}, times in µs.
const gcraScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #ARGV / 2
local fields = {}
for i = 1, n do fields[i] = tostring(i) end
local cur = redis.call('HMGET', KEYS[1], unpack(fields))
local out = {1}
local nt = {}
local ttl = 0
for i = 1, n do
  local iv = tonumber(ARGV[2 * i - 1])
  local tol = tonumber(ARGV[2 * i])
  local tat = tonumber(cur[i]) or now
  if tat < now then tat = now end
  local nxt = tat + iv
  local allowAt = nxt - tol
  if now < allowAt then
    out[1] = 0
    out[3 * i - 1] = 0
    out[3 * i] = math.ceil(tat - now)
    out[3 * i + 1] = math.ceil(allowAt - now)
  else
    nt[i] = nxt
    if nxt - now > ttl then ttl = nxt - now end
    out[3 * i - 1] = math.floor((now - allowAt) / iv)
    out[3 * i] = math.ceil(nxt - now)
    out[3 * i + 1] = 0
  end
end
if out[1] == 1 then
  local args = {}
  for i = 1, n do
    args[2 * i - 1] = fields[i]
    args[2 * i] = string.format('%.3f', nt[i])
  end
  redis.call('HSET', KEYS[1], unpack(args))
  redis.call('PEXPIRE', KEYS[1], math.ceil(ttl / 1000) + 1)
else
  for i = 1, n do
    if out[3 * i + 1] == 0 then
      local iv = tonumber(ARGV[2 * i - 1])
      local tol = tonumber(ARGV[2 * i])
      local tat = tonumber(cur[i]) or now
      if tat < now then tat = now end
      out[3 * i - 1] = math.floor((now + tol - tat) / iv)
      out[3 * i] = math.ceil(tat - now)
    end
  end
end
return out
`

var script = redis.NewScript(gcraScript)

// The client library logs every failed dial, which while Redis is down means a line per
// request; the filter logs each change between reachable and unreachable itself instead.
func init() { redis.SetLogger(quiet{}) }

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// redisStore is the cluster limiter: the state of every key lives in Redis.
type redisStore struct {
	limits []limit
	client atomic.Pointer[redis.Client]
	opts   *redis.Options
	prefix string // the key prefix, the route and a fingerprint of the limits
	args   []any  // interval and tolerance of each limit, in µs, built once
	log    zerolog.Logger

	down        atomic.Bool
	errs        atomic.Int64 // failed decisions
	transitions atomic.Int64 // reachable <-> unreachable changes

	probing atomic.Bool
	probes  sync.WaitGroup
	stop    chan struct{}
}

// probeEvery is how often a lost Redis is tried again. The client library's own pool, once
// its dials keep failing, refuses every command and probes only once a second; a fresh client
// swapped in as soon as a probe succeeds brings limiting back within this interval of Redis's
// return instead.
const probeEvery = 100 * time.Millisecond

// RedisConfig is the redis subtree of the config.
type RedisConfig struct {
	// Addr is host:port of the Redis server.
	Addr string `mapstructure:"addr"`
	// Username and Password authenticate (Redis 6 ACLs, or requirepass with Password alone).
	// Secrets: prefer the environment (password_env).
	Username    string `mapstructure:"username"`
	Password    string `mapstructure:"password"`
	PasswordEnv string `mapstructure:"password_env"`
	// DB is the logical database number.
	DB int `mapstructure:"db"`
	// Timeout bounds a decision's round trip, connecting included.
	Timeout time.Duration `mapstructure:"timeout"`
	// Prefix starts every key the filter writes.
	Prefix string `mapstructure:"prefix"`
}

func newRedisStore(limits []limit, rc RedisConfig, password, route string, log zerolog.Logger) *redisStore {
	s := &redisStore{
		limits: limits,
		opts: &redis.Options{
			Addr:         rc.Addr,
			Username:     rc.Username,
			Password:     password,
			DB:           rc.DB,
			DialTimeout:  rc.Timeout,
			ReadTimeout:  rc.Timeout,
			WriteTimeout: rc.Timeout,
			PoolTimeout:  rc.Timeout,
			// A retry would double a decision's latency while Redis is down; the fail
			// policy answers instead, and the next request dials again.
			MaxRetries:    -1,
			DialerRetries: 1,
			// The client's identity handshake (CLIENT SETINFO) is refused by older servers.
			DisableIdentity: true,
		},
		log:  log,
		stop: make(chan struct{}),
	}
	s.client.Store(redis.NewClient(s.opts))
	fp := sha256.New()
	for _, l := range limits {
		s.args = append(s.args, usec(l.interval), usec(l.tolerance))
		fmt.Fprintf(fp, "%d/%d/%d;", l.rate, l.per, l.burst)
	}
	s.prefix = rc.Prefix + route + ":" + hex.EncodeToString(fp.Sum(nil)[:6]) + ":"
	return s
}

func usec(ns int64) string { return strconv.FormatFloat(float64(ns)/1e3, 'f', 3, 64) }

// take decides one request of the key (kind, b, str). Only a SHA-256 digest of the key
// reaches Redis: a header or claim value used as a key (an API key) is never stored there,
// and every gateway names a client's key alike.
func (s *redisStore) take(kind byte, b []byte, str string) (decision, error) {
	h := sha256.New()
	h.Write([]byte{kind})
	h.Write(b)
	h.Write([]byte(str))
	var sum [sha256.Size]byte
	key := s.prefix + hex.EncodeToString(h.Sum(sum[:0])[:16])
	v, err := script.Run(context.Background(), s.client.Load(), []string{key}, s.args...).Int64Slice()
	if err == nil && len(v) != 1+3*len(s.limits) {
		err = fmt.Errorf("script returned %d values, want %d", len(v), 1+3*len(s.limits))
	}
	if err != nil {
		s.errs.Add(1)
		if s.down.CompareAndSwap(false, true) {
			s.transitions.Add(1)
			s.log.Warn().Err(err).Msg("ratelimit: redis unreachable; applying the fail policy until it answers again")
		}
		if s.probing.CompareAndSwap(false, true) {
			s.probes.Add(1)
			go s.probe()
		}
		return decision{}, err
	}
	if s.down.CompareAndSwap(true, false) {
		s.transitions.Add(1)
		s.log.Info().Msg("ratelimit: redis answers again; limiting resumed")
	}
	d := decision{allowed: v[0] == 1, n: len(s.limits)}
	for i := range s.limits {
		d.res[i] = result{remaining: v[1+3*i], reset: v[2+3*i] * 1e3, retry: v[3+3*i] * 1e3}
	}
	return d, nil
}

// probe pings Redis with a fresh client every probeEvery and, once it answers, makes that
// client the one decisions use.
func (s *redisStore) probe() {
	defer s.probes.Done()
	defer s.probing.Store(false)
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		c := redis.NewClient(s.opts)
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.DialTimeout+s.opts.ReadTimeout)
		err := c.Ping(ctx).Err()
		cancel()
		if err != nil {
			c.Close()
			continue
		}
		s.client.Swap(c).Close()
		return
	}
}

func (s *redisStore) Close() error {
	close(s.stop)
	s.probes.Wait()
	return s.client.Load().Close()
}
