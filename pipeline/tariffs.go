package pipeline

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fleetmeter/rating"
	"fleetmeter/rules"
)

// TariffWatch keeps an engine's tariffs current with the files at a path (rules.Watch:
// a change is swapped in once it compiles; a change that does not is refused and the
// tariffs in force stay) and reports each outcome and the tariffs in force as metrics.
type TariffWatch struct {
	path     string
	interval time.Duration
	engine   *rating.Engine
	logger   *slog.Logger

	mu      sync.Mutex
	reloads *prometheus.CounterVec
	refused prometheus.Gauge
	info    *prometheus.GaugeVec
}

// NewTariffWatch reports the engine's tariffs as in force and registers the metrics with
// reg (nil: not registered).
func NewTariffWatch(path string, interval time.Duration, engine *rating.Engine, reg prometheus.Registerer,
	logger *slog.Logger) *TariffWatch {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &TariffWatch{path: path, interval: interval, engine: engine, logger: logger,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_tariff_reloads_total",
			Help: "Tariff file changes seen, by outcome: applied, or refused (invalid; the tariffs in force stay)."},
			[]string{"outcome"}),
		refused: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetmeter_tariff_refused",
			Help: "1 while the tariff files on disk are refused and older tariffs stay in force."}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fleetmeter_tariff_info",
			Help: "1 per tariff in force (or scheduled by valid_from); version is the rated tariff_version (version+file hash)."},
			[]string{"tariff", "version"}),
	}
	w.reloads.WithLabelValues("applied")
	w.reloads.WithLabelValues("refused")
	w.show(engine.Rules())
	if reg != nil {
		reg.MustRegister(w.reloads, w.refused, w.info)
	}
	return w
}

// Run watches until ctx ends.
func (w *TariffWatch) Run(ctx context.Context) error {
	rules.Watch(ctx, w.path, w.interval, func(set *rules.Set) {
		w.engine.SetRules(set)
		w.reloads.WithLabelValues("applied").Inc()
		w.refused.Set(0)
		w.show(set)
	}, func(err error) {
		w.reloads.WithLabelValues("refused").Inc()
		w.refused.Set(1)
		w.logger.Error("tariff change refused; the previous tariffs stay in force", "err", err)
	})
	return nil
}

func (w *TariffWatch) show(set *rules.Set) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.info.Reset()
	if set == nil {
		return
	}
	for _, t := range set.Tariffs {
		w.info.WithLabelValues(t.ID, t.Stamp).Set(1)
	}
}
