package edge

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// Limiter is a token bucket per key (a client's [LimitKey]) that keeps
// the buckets of at most a fixed number of keys, dropping the least
// recently used when a new key comes. Memory is then bounded however many
// addresses a flood comes from; the price is that a key dropped and seen
// again starts with a full bucket, which gains a client nothing unless it
// already has more addresses than the limiter keeps keys. pinhole builds
// one per kind of request (session creation, PATCH/DELETE, probes).
//
// The LRU is hashicorp/golang-lru's simplelru: typed (container/list would
// need an assertion per lookup), well tested, without dependencies, and
// not locked itself, so one mutex covers lookup and bucket together.
type Limiter struct {
	mu      sync.Mutex
	buckets *simplelru.LRU[string, *rate.Limiter]
	every   rate.Limit
	burst   int
}

// NewLimiter allows each key perSecond requests a second on average and
// burst at once, keeping at most maxKeys keys. perSecond must be above
// zero; burst and maxKeys below 1 mean 1.
func NewLimiter(perSecond float64, burst, maxKeys int) *Limiter {
	if burst < 1 {
		burst = 1
	}
	if maxKeys < 1 {
		maxKeys = 1
	}
	// simplelru only fails for a size below 1.
	buckets, _ := simplelru.NewLRU[string, *rate.Limiter](maxKeys, nil)
	return &Limiter{buckets: buckets, every: rate.Limit(perSecond), burst: burst}
}

// Allow takes a token from key's bucket if it has one. Otherwise it takes
// nothing and says how long until a token is there, for Retry-After: a
// client that keeps asking while refused does not push its own wait
// further out, which would lock out one that simply retries too early.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	return l.allowAt(key, time.Now())
}

func (l *Limiter) allowAt(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, found := l.buckets.Get(key)
	if !found {
		b = rate.NewLimiter(l.every, l.burst)
		l.buckets.Add(key, b)
	}
	tokens := b.TokensAt(now)
	if tokens >= 1 {
		b.AllowN(now, 1)
		return true, 0
	}
	if l.every <= 0 {
		return false, time.Duration(math.MaxInt64)
	}
	wait := time.Duration((1 - tokens) / float64(l.every) * float64(time.Second))
	return false, wait
}

// Len is the number of keys held now.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buckets.Len()
}

// RetryAfter is d as a Retry-After value (RFC 9110 section 10.2.3): whole
// seconds, rounded up so a client that waits that long finds a token, and
// at least 1 so it does not retry at once.
func RetryAfter(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// SetRetryAfter sets w's Retry-After header to [RetryAfter](d).
func SetRetryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", RetryAfter(d))
}
