package metrics

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	invrt "github.com/invgen/invgen/runtime"
)

// The check of each Redis server a manager uses (its eviction policy) is
// the gauge
//
//	invgen_redis_unsafe{prefix,server,reason}
//
// set to 1 when the last check of the server found it unsafe and the
// manager uses it anyway: reason="eviction_allowed" (it may evict keys and
// WithEvictionAllowed lets it serve), "unchecked" (its configuration could
// not be read) or "refused" (it may evict keys; calls fail with
// ErrUnsafeRedis). Every reason is 0 once the server passes. It is
// registered on the first check.

var _ invrt.RedisObserver = (*Observer)(nil)

// redisGauges holds each Observer's gauge, registered on first use.
var redisGauges sync.Map // *Observer -> *prometheus.GaugeVec

// unsafeReasons are the verdicts the gauge counts.
var unsafeReasons = []invrt.RedisVerdict{invrt.RedisEvictionAllowed, invrt.RedisUnchecked, invrt.RedisRefused}

// RedisChecked records the check of a Redis server (invrt.RedisObserver).
func (o *Observer) RedisChecked(prefix string, r invrt.RedisConfig, verdict invrt.RedisVerdict) {
	g := o.redisGauge()
	if g == nil {
		return
	}
	for _, reason := range unsafeReasons {
		v := 0.0
		if reason == verdict {
			v = 1
		}
		g.WithLabelValues(prefix, r.Server, string(reason)).Set(v)
	}
}

// redisGauge returns o's gauge of unsafe servers, registering it first;
// nil if it cannot be registered.
func (o *Observer) redisGauge() *prometheus.GaugeVec {
	if g, ok := redisGauges.Load(o); ok {
		return g.(*prometheus.GaugeVec)
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "invgen_redis_unsafe",
		Help: "1 when the last check of a Redis server found that it may evict keys or could not be read, by reason (eviction_allowed, unchecked, refused)."},
		[]string{"prefix", "server", "reason"})
	if actual, loaded := redisGauges.LoadOrStore(o, g); loaded {
		return actual.(*prometheus.GaugeVec)
	}
	if err := o.reg.Register(g); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.GaugeVec); ok {
				redisGauges.Store(o, existing)
				return existing
			}
		}
		redisGauges.Delete(o)
		return nil
	}
	return g
}
