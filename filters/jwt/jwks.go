package jwt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// fetchOptions are the settings of one JWKS fetcher; fetchers with equal URL and options are
// shared by every route and every snapshot that use them.
type fetchOptions struct {
	minRefresh time.Duration // floor on the lifetime the server's caching headers give
	maxRefresh time.Duration // ceiling on it, and the interval when the server gives none
	throttle   time.Duration // at most one refresh for unknown kids per this interval
	timeout    time.Duration // one fetch, connect to last byte
	maxBytes   int64         // largest key set read
}

func (o fetchOptions) String() string {
	return fmt.Sprintf("min=%s max=%s throttle=%s timeout=%s bytes=%d", o.minRefresh, o.maxRefresh, o.throttle, o.timeout, o.maxBytes)
}

// defaultRefresh is the interval used when the server sends no caching headers.
const defaultRefresh = 5 * time.Minute

// fetcher keeps one JWKS URL's key set fresh in the background. Requests read the current set
// with one atomic load and never wait on the network: a token with a kid the set lacks is
// refused at once and asks for a refresh (kick), which the fetcher runs at most once per
// throttle interval, however many requests ask. A failed fetch keeps the last good set.
type fetcher struct {
	url  string
	opts fetchOptions
	log  zerolog.Logger

	set     atomic.Pointer[keySet]
	fetches atomic.Int64 // fetch attempts, for tests and logs

	client *http.Client
	kickc  chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// newFetcher makes a first fetch, bounded by the fetch timeout, so a gateway that starts while
// its identity provider is up serves tokens from its first request; then it starts refreshing
// in the background. A failed first fetch is logged and retried: the gateway starts anyway and
// refuses tokens of that issuer until a fetch succeeds.
func newFetcher(url string, opts fetchOptions, log zerolog.Logger) *fetcher {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 2, 2
	tr.ResponseHeaderTimeout = opts.timeout
	f := &fetcher{
		url:   url,
		opts:  opts,
		log:   log.With().Str("jwks_url", url).Logger(),
		kickc: make(chan struct{}, 1),
		done:  make(chan struct{}),
		client: &http.Client{
			Transport: tr,
			Timeout:   opts.timeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 3 {
					return errors.New("more than 3 redirects")
				}
				if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
					return fmt.Errorf("redirect to scheme %q", req.URL.Scheme)
				}
				return nil
			},
		},
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	next, err := f.fetch()
	if err != nil {
		next = backoff(1, opts.minRefresh)
		f.log.Warn().Err(err).Dur("retry_in", next).Msg("jwt: first JWKS fetch failed; retrying in the background")
	}
	go f.run(next, err != nil)
	return f
}

// current returns the last good key set, or nil before the first successful fetch.
func (f *fetcher) current() *keySet { return f.set.Load() }

// kick asks for a refresh because a token named a kid the set lacks. It never blocks; asks
// while one is pending coalesce.
func (f *fetcher) kick() {
	select {
	case f.kickc <- struct{}{}:
	default:
	}
}

// Close stops the refresher and waits for it, cancelling a fetch in flight.
func (f *fetcher) Close() error {
	f.once.Do(func() {
		f.cancel()
		<-f.done
		f.client.CloseIdleConnections()
	})
	return nil
}

func (f *fetcher) run(next time.Duration, failed bool) {
	defer close(f.done)
	failures := 0
	if failed {
		failures = 1
	}
	last := time.Now() // start of the latest fetch, for the throttle
	timer := time.NewTimer(next)
	defer timer.Stop()
	var throttled <-chan time.Time // fires when a kick that came too early may run
	refresh := func() {
		last = time.Now()
		d, err := f.fetch()
		if err != nil {
			failures++
			d = backoff(failures, f.opts.minRefresh)
			f.log.Warn().Err(err).Int("failures", failures).Dur("retry_in", d).
				Msg("jwt: JWKS fetch failed; keeping the last good key set")
		} else {
			if failures > 0 {
				f.log.Info().Msg("jwt: JWKS fetch succeeded again")
			}
			failures = 0
		}
		timer.Reset(d)
		// Asks that came in while fetching are answered by this fetch; a kid still unknown
		// asks again with its next request.
		select {
		case <-f.kickc:
		default:
		}
	}
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-timer.C:
			refresh()
		case <-f.kickc:
			if throttled != nil {
				continue // a refresh is already due at the end of the interval
			}
			if wait := f.opts.throttle - time.Since(last); wait > 0 {
				throttled = time.After(wait)
				continue
			}
			timer.Stop()
			refresh()
		case <-throttled:
			throttled = nil
			timer.Stop()
			refresh()
		}
	}
}

// backoff is the wait before retry n after failures: 1s, 2s, 4s… capped at limit.
func backoff(n int, limit time.Duration) time.Duration {
	d := time.Second
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// fetch gets the key set once. On success it installs the new set and returns how long the
// server lets it be cached, within the configured bounds.
func (f *fetcher) fetch() (time.Duration, error) {
	f.fetches.Add(1)
	ctx, cancel := context.WithTimeout(f.ctx, f.opts.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("fetch: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.opts.maxBytes+1))
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	if int64(len(body)) > f.opts.maxBytes {
		return 0, fmt.Errorf("key set is larger than %d bytes", f.opts.maxBytes)
	}
	keys, skipped, err := parseJWKS(body, false)
	if err != nil {
		return 0, err
	}
	for _, s := range skipped {
		f.log.Warn().Err(s).Msg("jwt: JWKS key skipped")
	}
	if len(keys) == 0 {
		return 0, errors.New("key set has no usable key")
	}
	// Keep the *key of every unchanged key, so tokens cached as verified with it stay valid.
	if old := f.set.Load(); old != nil {
		for i, k := range keys {
			if o := old.byKid[k.kid]; o != nil && o.fp == k.fp && o.alg == k.alg {
				keys[i] = o
			}
		}
	}
	f.set.Store(newKeySet(keys))
	return cacheLifetime(resp.Header, time.Now(), f.opts), nil
}

// cacheLifetime reads Cache-Control max-age (less Age) or else Expires (against Date) and
// clamps it to [minRefresh, maxRefresh]; no-store and no-cache mean as soon as allowed.
func cacheLifetime(h http.Header, now time.Time, o fetchOptions) time.Duration {
	d, ok := time.Duration(0), false
	for _, v := range h.Values("Cache-Control") {
		for _, dir := range strings.Split(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return o.minRefresh
			case "max-age":
				if n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err == nil && n >= 0 {
					d, ok = time.Duration(min(n, 1<<31))*time.Second, true
				}
			}
		}
	}
	if ok {
		if age, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && age > 0 {
			d -= time.Duration(min(age, 1<<31)) * time.Second
		}
	} else if exp := h.Get("Expires"); exp != "" {
		ok = true // an invalid Expires means already expired (RFC 9111 5.3)
		if t, err := http.ParseTime(exp); err == nil {
			base := now
			if date, err := http.ParseTime(h.Get("Date")); err == nil {
				base = date
			}
			d = t.Sub(base)
		}
	}
	if !ok {
		d = defaultRefresh
	}
	return min(max(d, o.minRefresh), o.maxRefresh)
}
