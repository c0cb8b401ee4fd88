package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"fleetmeter/cdr"
	"fleetmeter/clickhouse"
	"fleetmeter/ingest/payload"
	"fleetmeter/internal/chserver"
	"fleetmeter/internal/netport"
	"fleetmeter/record"
	"fleetmeter/sim"
)

// fleetRig is the whole pipeline as deployed, one process per service: Mosquitto, the
// Kafka broker, the mediator (MQTT, CoAP, HTTP and CDR collectors), the rater, the
// loader and ClickHouse, fed by a mixed fleet (sim.NewMixedFleet) over all four protocols.
type fleetRig struct {
	dir                          string
	procs                        []*Process
	ch                           *chserver.Server
	store                        *clickhouse.Store
	mqttAddr, coapAddr, httpAddr string
	cdrDir                       string
	fleet                        *sim.Fleet
	tick                         int
	metrics                      map[string]string // service -> its /metrics address
	// tookSum sums, over tookTicks ticks, when each protocol's last acknowledgement of a
	// tick came after its start (the fleet's own view of a tick).
	genMu     sync.Mutex // r.tick and the fleet's generation; tookSum, tookTicks
	tookSum   [4]time.Duration
	tookTicks int
	mq        []paho.Client
	coapMu    sync.Mutex
	coap      *coapSet   // the sockets new ticks use
	coapOld   []*coapSet // earlier sockets, closed once their ticks are done
	httpc     *http.Client
}

// coapSet is one generation of the fleet's CoAP sockets and the ticks still using it.
type coapSet struct {
	conns []*udpClient.Conn
	born  time.Time
	users int
}

const (
	// The fleet's concurrency: CoAP sockets, each with one request in flight, as a meter
	// has (the collector answers a socket's requests one after the other, each once Kafka
	// acknowledged it, so 32 sockets capped the fleet at about 32 requests per Kafka
	// round trip, some 1.5k/s here, whatever was in flight on each); HTTP gateways
	// posting at once (each on a keep-alive connection of its own).
	coapSockets   = 128
	coapPerSocket = 1
	// coapRotate is how long the fleet keeps a set of CoAP sockets before it sends from
	// fresh ones. go-coap's plain UDP server (dev mode, which the rig uses to spare 8,000
	// DTLS handshakes) walks every response a peer got in the last 247 s (CoAP's exchange
	// lifetime, for answering retransmissions) on each datagram from it, in its read
	// loop. A meter sends a reading every few minutes from its own endpoint, so its
	// session holds one or two; a rig socket standing in for 60 meters for minutes held
	// thousands, and the server's cost per request grew round after round (the maximum
	// fell from 21k to 12k records/s over three rounds; CoAP acknowledgements took 4 s at
	// the 80% level). DTLS sessions expire theirs on a timer, not per datagram.
	//
	// A new socket must not take the port of one closed within the exchange lifetime: the
	// server would still hold that one's responses by message ID and answer a new request
	// whose ID matched one from there (CoAP's deduplication), with the old token, which
	// the client ignores. The kernel's choice reused such ports within seconds, so the
	// rig binds its sockets itself, walking coapPorts, which it comes round to again only
	// after coapPorts.n/coapSockets*coapRotate (13 minutes).
	coapRotate    = 5 * time.Second
	httpGateways  = 16
	fleetProcess  = "fleet (this process)"
	benchDatabase = "fleetmeter_bench"
	benchHTTPKey  = "bench-key-agrico-0123456789"
)

// startFleetRig builds the binaries into dir/bin and starts every service.
func startFleetRig(ctx context.Context, root, dir string, self []string, devices int, partitions int, logger *slog.Logger) (*fleetRig, error) {
	r := &fleetRig{dir: dir, cdrDir: filepath.Join(dir, "cdr"), fleet: sim.NewMixedFleet(devices, sim.DefaultMix, 1),
		metrics: map[string]string{}}
	ok := false
	defer func() {
		if !ok {
			r.close()
		}
	}()
	bin := filepath.Join(dir, "bin")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin+"/", "./cmd/mediator", "./cmd/rater")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the binaries: %v\n%s", err, b)
	}
	if err := os.MkdirAll(r.cdrDir, 0o700); err != nil {
		return nil, err
	}
	mosq, mqttAddr, err := StartMosquitto(dir, 0)
	if err != nil {
		return nil, err
	}
	r.procs, r.mqttAddr = append(r.procs, mosq), mqttAddr
	kp, err := StartProcess("kafka", dir, append(slices.Clone(self), "kafka-broker", "--dir", dir, "--partitions", strconv.Itoa(partitions))...)
	if err != nil {
		return nil, err
	}
	r.procs = append(r.procs, kp)
	kafkaAddr, err := kp.waitLine("kafka ", 30*time.Second)
	if err != nil {
		return nil, err
	}
	r.ch, err = StartClickHouse(ctx, filepath.Join(dir, "clickhouse"), logger)
	if err != nil {
		return nil, err
	}
	if pid := findPid("--config-file=" + filepath.Join(dir, "clickhouse")); pid != 0 {
		r.procs = append(r.procs, &Process{Name: "clickhouse", Pid: pid})
	}
	chcfg := clickhouse.DefaultConfig()
	chcfg.Addr, chcfg.Database = []string{r.ch.NativeAddr()}, benchDatabase
	if r.store, err = clickhouse.Open(ctx, chcfg); err != nil {
		return nil, err
	}
	rulesDir, err := WriteTariffs(filepath.Join(dir, "rules"))
	if err != nil {
		return nil, err
	}
	udpPort, err := netport.Stable()
	if err != nil {
		return nil, err
	}
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = netport.Stable(); err != nil {
			return nil, err
		}
	}
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	r.coapAddr, r.httpAddr = addr(udpPort), addr(ports[0])
	med := fmt.Sprintf(`listen: %s
log_level: warn
kafka:
  brokers: [%s]
  partitions: %d
mqtt:
  enabled: true
  brokers: ["tcp://%s"]
  client_id: bench-mediator
  qos: 1
coap:
  enabled: true
  listen: %s
  dev_mode: true
http:
  enabled: true
  listen: %s
  max_concurrent: 256
  tenant_max_concurrent: 256
  tenant_rate: 0
  keys:
    - tenant: agrico
      key: %s
cdr:
  enabled: true
  dir: %s
  settle: 100ms
  poll: 50ms
  tenants:
    rules:
      - tenant: %s
        dnn: %s
`, addr(ports[1]), kafkaAddr, partitions, mqttAddr, r.coapAddr, r.httpAddr, benchHTTPKey, r.cdrDir, sim.SliceTenant, sim.SliceDNN)
	rat := func(listen int) string {
		return fmt.Sprintf(`listen: %s
log_level: warn
instance: bench
rules: %s
kafka:
  brokers: [%s]
clickhouse:
  addr: [%s]
  database: %s
`, addr(listen), rulesDir, kafkaAddr, r.ch.NativeAddr(), benchDatabase)
	}
	for _, c := range []struct{ name, body string }{{"mediator", med}, {"rater", rat(ports[2])}, {"loader", rat(ports[3])}} {
		if err := os.WriteFile(filepath.Join(dir, c.name+".yaml"), []byte(c.body), 0o600); err != nil {
			return nil, err
		}
	}
	for _, c := range []struct {
		name string
		argv []string
		port int
	}{
		{"mediator", []string{bin + "/mediator", "run", "--config", filepath.Join(dir, "mediator.yaml")}, ports[1]},
		{"rater", []string{bin + "/rater", "run", "--config", filepath.Join(dir, "rater.yaml")}, ports[2]},
		{"loader", []string{bin + "/rater", "load", "--config", filepath.Join(dir, "loader.yaml")}, ports[3]},
	} {
		p, err := StartProcess(c.name, dir, c.argv...)
		if err != nil {
			return nil, err
		}
		r.procs = append(r.procs, p)
		r.metrics[c.name] = addr(c.port)
		if err := waitHTTP200("http://"+addr(c.port)+"/readyz", p, 90*time.Second); err != nil {
			return nil, err
		}
	}
	// Devices' connections: MQTT clients, CoAP sockets, HTTP gateways' keep-alive pool.
	for k := range 32 {
		opts := paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("bench-fleet-" + strconv.Itoa(k)).
			SetMaxResumePubInFlight(1000)
		c := paho.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return nil, fmt.Errorf("mqtt connect: %v", tok.Error())
		}
		r.mq = append(r.mq, c)
	}
	if r.coap, err = dialCoAP(r.coapAddr); err != nil {
		return nil, err
	}
	r.httpc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: httpGateways}, Timeout: 30 * time.Second}
	ok = true
	return r, nil
}

// coapPorts hands out the local ports of the fleet's CoAP sockets, from a range below
// Linux's ephemeral one (32768-60999), so no kernel-chosen port competes for them.
var coapPorts = struct {
	sync.Mutex
	lo, n, next int
}{lo: 12000, n: 20000}

// dialCoAP opens a set of the fleet's CoAP sockets, each from the next free port of
// coapPorts.
func dialCoAP(addr string) (*coapSet, error) {
	set := &coapSet{born: time.Now()}
	coapPorts.Lock()
	defer coapPorts.Unlock()
	var err error
	for tries := 0; len(set.conns) < coapSockets && tries < coapPorts.n; tries++ {
		port := coapPorts.lo + coapPorts.next
		coapPorts.next = (coapPorts.next + 1) % coapPorts.n
		var c *udpClient.Conn
		c, err = udp.Dial(addr, options.WithDialer(&net.Dialer{LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}))
		if err != nil {
			continue // in use: the next one
		}
		set.conns = append(set.conns, c)
	}
	if len(set.conns) < coapSockets {
		set.close()
		return nil, fmt.Errorf("coap sockets: no free local port left in %d-%d: %v", coapPorts.lo, coapPorts.lo+coapPorts.n-1, err)
	}
	return set, nil
}

func (s *coapSet) close() {
	for _, c := range s.conns {
		_ = c.Close()
	}
}

// coapConns returns the CoAP sockets a tick sends from, fresh ones once the current set
// is coapRotate old, and the function that gives them back when the tick is done (the
// last tick of a replaced set closes it).
func (r *fleetRig) coapConns() ([]*udpClient.Conn, func(), error) {
	r.coapMu.Lock()
	defer r.coapMu.Unlock()
	if time.Since(r.coap.born) >= coapRotate {
		next, err := dialCoAP(r.coapAddr)
		if err != nil {
			return nil, nil, err
		}
		r.coapOld = append(r.coapOld, r.coap)
		r.coap = next
		r.closeIdleCoAPLocked()
	}
	set := r.coap
	set.users++
	return set.conns, func() {
		r.coapMu.Lock()
		defer r.coapMu.Unlock()
		set.users--
		r.closeIdleCoAPLocked()
	}, nil
}

func (r *fleetRig) closeIdleCoAPLocked() {
	old := r.coapOld[:0]
	for _, set := range r.coapOld {
		if set.users == 0 {
			set.close()
			continue
		}
		old = append(old, set)
	}
	r.coapOld = old
}

func waitHTTP200(url string, p *Process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.Exited() {
			return fmt.Errorf("%s exited: %s", p.Name, p.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready at %s: %s", p.Name, url, p.Output())
}

func (r *fleetRig) close() {
	for _, c := range r.mq {
		c.Disconnect(100)
	}
	r.coapMu.Lock()
	for _, set := range append(r.coapOld, r.coap) {
		if set != nil {
			set.close()
		}
	}
	r.coapOld, r.coap = nil, nil
	r.coapMu.Unlock()
	// Stop the collectors first, then what they feed.
	for i := len(r.procs) - 1; i >= 0; i-- {
		if r.procs[i].Cmd != nil {
			r.procs[i].Stop(20 * time.Second)
		}
	}
	if r.store != nil {
		r.store.Close()
	}
	if r.ch != nil {
		_ = r.ch.Stop()
	}
}

// probe is one record whose arrival in ClickHouse is timed: its row is found by the
// table's primary key (tenant, record_id; a usage row's record_id is its event_id), so
// polling stays cheap however large the table grows.
type probe struct {
	tenant, id string
	proto      sim.Protocol
	sent       time.Time
}

// sendTick generates and sends one tick over every protocol at once and returns when
// every message was acknowledged (PUBACK, 2.04, 202, the CDR file handed over). Every
// probeEvery-th message of each protocol becomes a latency probe (0: none).
// Each probe goes to track the moment it is sent, so the ClickHouse poll looks for it at
// once (collected at the tick's end instead, a probe's latency would include the rest of
// the tick: up to the whole tick's spread, most of it at low load).
// The tick is generated at once (ticks are generated one at a time, in order); its
// sending may overlap the previous ticks' last acknowledgements.
func (r *fleetRig) sendTick(ctx context.Context, probeEvery int, spread time.Duration, track func(probe)) (records int, err error) {
	now := time.Now()
	r.genMu.Lock()
	b := r.fleet.Tick(r.tick, now)
	tick := r.tick
	r.tick++
	r.genMu.Unlock()
	return r.send(ctx, b, tick, now, probeEvery, spread, track)
}

// send sends generated tick b (generated at now) and returns when every message was
// acknowledged.
func (r *fleetRig) send(ctx context.Context, b sim.Batch, tick int, now time.Time, probeEvery int, spread time.Duration,
	track func(probe)) (records int, err error) {
	// pace spreads a tick's messages evenly over spread, as a real fleet's reports are
	// spread over their period rather than sent in one burst.
	// It sleeps only when a message is due 5 ms or more ahead: sleeping per message would
	// add each sleep's overshoot (a millisecond on a busy machine) thousands of times.
	pace := func(j, n int) {
		if spread > 0 && n > 0 {
			if d := time.Until(now.Add(spread * time.Duration(j) / time.Duration(n))); d >= 5*time.Millisecond {
				time.Sleep(d)
			}
		}
	}
	ms := now.UnixMilli()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	addProbe := func(proto sim.Protocol, tenant, id string, at time.Time) {
		if id != "" {
			track(probe{tenant: tenant, id: id, proto: proto, sent: at})
		}
	}
	// The event id a collector gives a device message: parsed as the collector parses it.
	msgID := func(d *sim.Device, source string, payload []byte) string {
		p := payloadParser{}
		recs, err := p.Parse(payload, d.Tenant, d.ID, source, ms)
		if err != nil || len(recs) == 0 {
			return ""
		}
		return recs[0].EventID
	}
	// finished notes when a protocol's last acknowledgement of the tick came.
	var took [4]time.Duration
	finished := func(proto sim.Protocol) {
		mu.Lock()
		took[proto] = max(took[proto], time.Since(now))
		mu.Unlock()
	}
	defer func() {
		r.genMu.Lock()
		for i, d := range took {
			r.tookSum[i] += d
		}
		r.tookTicks++
		r.genMu.Unlock()
	}()
	// MQTT: each client publishes its share, QoS 1, and waits for every PUBACK.
	for k, c := range r.mq {
		wg.Go(func() {
			defer finished(sim.MQTT)
			var toks []paho.Token
			for j := k; j < len(b.MQTT); j += len(r.mq) {
				pace(j, len(b.MQTT))
				m := b.MQTT[j]
				d := &r.fleet.Devices[m.Device]
				if probeEvery > 0 && j%probeEvery == 0 {
					addProbe(sim.MQTT, d.Tenant, msgID(d, record.SourceMQTT, m.Payload), time.Now())
				}
				toks = append(toks, c.Publish(r.fleet.Topic("fleetmeter", m.Device), 1, false, m.Payload))
			}
			for _, t := range toks {
				if !t.WaitTimeout(60*time.Second) || t.Error() != nil {
					fail(fmt.Errorf("mqtt publish: %v", t.Error()))
					return
				}
			}
		})
	}
	// CoAP: confirmable POSTs, coapPerSocket in flight on each socket: a fleet's meters
	// each wait for their own 2.04, not for one another's.
	conns, release, err := r.coapConns()
	if err != nil {
		return 0, err
	}
	defer func() { wg.Wait(); release() }() // also on an early return: the workers still send
	workers := len(conns) * coapPerSocket
	for k := range workers {
		c := conns[k%len(conns)]
		wg.Go(func() {
			defer finished(sim.CoAP)
			for j := k; j < len(b.CoAP); j += workers {
				pace(j, len(b.CoAP))
				m := b.CoAP[j]
				d := &r.fleet.Devices[m.Device]
				if probeEvery > 0 && j%probeEvery == 0 {
					addProbe(sim.CoAP, d.Tenant, msgID(d, record.SourceCoAP, m.Payload), time.Now())
				}
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := sim.PostCoAP(cctx, c, d, m.Payload)
				cancel()
				if err != nil {
					fail(err)
					return
				}
			}
		})
	}
	// CDR: the tick's file lands in the drop directory as the CHF writes it (temporary
	// name, then renamed), at the tick's start; its probe is the file's first session.
	if b.CDR != nil {
		dec, _ := cdr.NewDecoder(cdr.Config{Tenants: cdr.TenantMap{Default: sim.SliceTenant}})
		first, err := dec.Decode(b.CDR, nil)
		if err != nil || len(first) == 0 {
			return 0, fmt.Errorf("generated cdr file: %v", err)
		}
		if err := sim.DropCDR(r.cdrDir, fmt.Sprintf("chf-%08d.cdr", tick+1), b.CDR); err != nil {
			return 0, err
		}
		if probeEvery > 0 {
			addProbe(sim.CDR, first[0].Tenant, first[0].EventID, time.Now())
		}
	}
	// HTTP: each gateway posts its trucks' JSON Lines; httpGateways at a time.
	sem := make(chan struct{}, httpGateways)
	for j, post := range b.HTTP {
		pace(j, len(b.HTTP))
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem; finished(sim.HTTP) }()
			if probeEvery > 0 && j%max(1, probeEvery/gatewayLines(post)) == 0 {
				line, _, _ := bytes.Cut(post.Body, []byte("\n"))
				if recs, err := gatewayRecords(post.Tenant, line, nil); err == nil && len(recs) == 1 {
					addProbe(sim.HTTP, post.Tenant, recs[0].EventID, time.Now())
				}
			}
			if err := sim.PostGateway(ctx, r.httpc, r.httpAddr, benchHTTPKey, post.Body); err != nil {
				fail(err)
			}
		})
	}
	wg.Wait()
	return b.Records, errors.Join(errs...)
}

func gatewayLines(p sim.Post) int { return max(1, len(p.Devices)) }

// payloadParser parses a device payload as the MQTT and CoAP collectors do.
type payloadParser struct{}

func (payloadParser) Parse(b []byte, tenant, device, source string, received int64) ([]record.Usage, error) {
	p := payload.Parser{Limits: payload.DefaultLimits()}
	return p.Parse(payload.KindAuto, b, payload.Identity{Tenant: tenant, Device: device, Source: source}, received, nil)
}

// count is the usage rows in ClickHouse (duplicates of a retried insert included).
func (r *fleetRig) count(ctx context.Context) (uint64, error) {
	var n uint64
	err := r.store.Conn().QueryRow(ctx, "SELECT count() FROM "+benchDatabase+".rated_usage WHERE charge = 'usage'").Scan(&n)
	return n, err
}

// cpu is each process's CPU time now.
func (r *fleetRig) cpu() map[string]time.Duration {
	m := map[string]time.Duration{}
	for _, p := range r.procs {
		m[p.Name] = CPUTime(p.Pid)
	}
	m[fleetProcess] = CPUTime(os.Getpid())
	return m
}

func (r *fleetRig) peakRSS() map[string]int64 {
	m := map[string]int64{}
	for _, p := range r.procs {
		m[p.Name] = PeakRSS(p.Pid)
	}
	return m
}

// phase is one measured stretch of fleet traffic.
type phase struct {
	Name    string
	Offered float64 // target records/s (0: as fast as acknowledged)
	Sent    int
	Landed  uint64  // rows that reached ClickHouse during the phase
	Seconds float64 // from the first send to the last row landed
	// Sending is how long the fleet sent; Tail how long the last rows took to land after.
	Sending, Tail float64
	Rate          float64 // landed rows per second
	CPU           map[string]time.Duration
	Latencies     []time.Duration // probes, device send -> row visible
	ByProto       [4][]time.Duration
	// Stages splits the probes' latency by their rows' own times: device send -> the
	// mediator's receipt (received_time_ms; for a CDR the file's pick-up), receipt -> rating
	// (rated_time_ms), rating -> visible (the rater's commit, the loader's fetch and insert,
	// and this harness's 50 ms poll).
	Stages [3][]time.Duration
	Lost   int // probes not visible by the end of the wait
	// The services' own view (bucket bounds of their histograms): mediator receipt to
	// ClickHouse insert, and one rater batch from poll to commit; p50 and p99.
	LoaderDelay, RaterBatch [2]float64
	// LoaderInsert is one insert into rated_usage, p50 and p99 (bucket bounds).
	LoaderInsert [2]float64
	// CH is what ClickHouse counted during the phase (system.events): queries, inserts,
	// merges and the rows they moved.
	CH map[string]uint64
}

// partWatch follows the active parts of rated_usage, so a poll reads only the parts it
// has not read yet. Part names are never reused: an insert or a merge makes a new one.
type partWatch struct {
	done map[string]bool // parts read (only active ones are kept)
}

func newPartWatch() *partWatch { return &partWatch{done: map[string]bool{}} }

// fresh lists the active parts not read yet, and forgets the read parts that are gone.
func (w *partWatch) fresh(ctx context.Context, conn driver.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, "SELECT name FROM system.parts WHERE database = '"+benchDatabase+"' AND table = 'rated_usage' AND active")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	active := map[string]bool{}
	var fresh []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		active[n] = true
		if !w.done[n] {
			fresh = append(fresh, n)
		}
	}
	for n := range w.done {
		if !active[n] {
			delete(w.done, n)
		}
	}
	return fresh, rows.Err()
}

// checked notes parts as read.
func (w *partWatch) checked(parts []string) {
	for _, n := range parts {
		w.done[n] = true
	}
}

// chEventNames are the counters of system.events a phase keeps.
var chEventNames = []string{"SelectQuery", "InsertQuery", "InsertedRows", "MergedRows",
	"MergedUncompressedBytes", "UserTimeMicroseconds", "SystemTimeMicroseconds"}

// chEvents reads chEventNames from system.events (those the server counts).
func (r *fleetRig) chEvents(ctx context.Context) map[string]uint64 {
	m := map[string]uint64{}
	rows, err := r.store.Conn().Query(ctx, "SELECT event, value FROM system.events WHERE event IN ('"+strings.Join(chEventNames, "', '")+"')")
	if err != nil {
		return m
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var v uint64
		if rows.Scan(&k, &v) == nil {
			m[k] = v
		}
	}
	return m
}

// held says whether a paced phase carried the load it was offered: the fleet sent at
// least frac of the offered rate (its acknowledgements kept up), every record sent landed,
// and the last ones within maxTail of the end of sending.
func (ph phase) held(frac float64) bool {
	return ph.Sending > 0 && ph.sentRate() >= frac*ph.Offered && ph.Landed >= uint64(ph.Sent) && ph.Tail <= maxTail.Seconds()
}

// sentRate is the records per second the fleet sent (0 when it did not send).
func (ph phase) sentRate() float64 {
	if ph.Sending <= 0 {
		return 0
	}
	return float64(ph.Sent) / ph.Sending
}

// tryText is a paced phase in a few words: offered, sent, and how late the last rows landed.
func (ph phase) tryText() string {
	lost := ""
	if ph.Landed < uint64(ph.Sent) {
		lost = fmt.Sprintf(", %d not landed", uint64(ph.Sent)-ph.Landed)
	}
	return fmt.Sprintf("offered %.0f, sent %.0f, last rows %.1f s after%s", ph.Offered, ph.sentRate(), ph.Tail, lost)
}

// maxTail bounds how long a held phase's last rows take to land once the fleet stopped.
const maxTail = 2 * time.Second

// runPhase sends ticks for d (paced to rate records/s, or back to back when rate is 0),
// waits for the rows, and times the probes by polling ClickHouse every 50 ms.
func (r *fleetRig) runPhase(ctx context.Context, name string, d time.Duration, rate float64, probeEvery int, progress func(string, ...any)) (phase, error) {
	ph := phase{Name: name, Offered: rate}
	n0, err := r.count(ctx)
	if err != nil {
		return ph, err
	}
	cpu0 := r.cpu()
	ch0 := r.chEvents(ctx)
	txns0 := r.scrape("rater", `fleetmeter_rater_transactions_total{outcome="committed"}`)
	delay0 := r.scrapeHistogram("loader", "fleetmeter_loader_record_delay_seconds")
	batch0 := r.scrapeHistogram("rater", "fleetmeter_rater_batch_seconds")
	insert0 := r.scrapeHistogram("loader", "fleetmeter_loader_insert_seconds", `table="rated_usage"`)
	pending := map[[2]string]probe{} // (tenant, event id) -> the probe
	var byProto [4][]time.Duration
	var stages [3][]time.Duration
	var mu sync.Mutex
	var lat []time.Duration
	pollCtx, stopPoll := context.WithCancel(ctx)
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		parts := newPartWatch()
		for pollCtx.Err() == nil {
			<-t.C
			mu.Lock()
			waiting := len(pending) > 0
			mu.Unlock()
			if !waiting {
				continue
			}
			// The parts first, then the pending probes: every row of a part listed now was
			// sent, and its probe registered, before the probes are taken.
			fresh, err := parts.fresh(pollCtx, r.store.Conn())
			if err != nil || len(fresh) == 0 {
				continue
			}
			mu.Lock()
			keys := make([]string, 0, len(pending))
			for k := range pending {
				keys = append(keys, "("+quote(k[0])+", "+quote(k[1])+")")
			}
			mu.Unlock()
			if len(keys) == 0 {
				parts.checked(fresh)
				continue
			}
			// Only the parts written since the last poll can hold a row not seen yet: a
			// pending probe's row is in a part created after the probe was sent. Each part
			// is read for the primary key as a set of tuples, which the index serves on
			// every server version: a granule per probe and part.
			names := make([]string, len(fresh))
			for i, n := range fresh {
				names[i] = quote(n)
			}
			rows, err := r.store.Conn().Query(pollCtx, "SELECT tenant, record_id, received_time_ms, rated_time_ms FROM "+benchDatabase+
				".rated_usage WHERE _part IN ("+strings.Join(names, ", ")+") AND (tenant, record_id) IN ("+strings.Join(keys, ", ")+")")
			if err != nil {
				continue
			}
			seen := time.Now()
			for rows.Next() {
				var k [2]string
				var received, rated uint64
				if rows.Scan(&k[0], &k[1], &received, &rated) != nil {
					continue
				}
				mu.Lock()
				if p, ok := pending[k]; ok {
					lat = append(lat, seen.Sub(p.sent))
					byProto[p.proto] = append(byProto[p.proto], seen.Sub(p.sent))
					// The row's own times split the probe's way: the clocks are this machine's.
					at := func(ms uint64) time.Time { return time.UnixMilli(int64(ms)) }
					if received > 0 && rated >= received {
						stages[0] = append(stages[0], at(received).Sub(p.sent))
						stages[1] = append(stages[1], at(rated).Sub(at(received)))
						stages[2] = append(stages[2], seen.Sub(at(rated)))
					}
					delete(pending, k)
				}
				mu.Unlock()
			}
			if rows.Err() == nil { // a part is read once its rows all came
				parts.checked(fresh)
			}
			rows.Close()
		}
	}()
	track := func(p probe) {
		mu.Lock()
		pending[[2]string{p.tenant, p.id}] = p
		mu.Unlock()
	}
	r.tookSum, r.tookTicks = [4]time.Duration{}, 0
	var lastSpread time.Duration
	// Paced, a tick starts on time even while the previous ones wait for their last
	// acknowledgements (up to maxTicksInFlight of them), as a fleet's devices do not wait
	// for one another: a slow acknowledgement delays its own device, not the fleet's rate.
	// Closed loop (rate 0), a tick starts once the previous one is acknowledged.
	const maxTicksInFlight = 3
	var (
		sendWG   sync.WaitGroup
		sendMu   sync.Mutex
		sendErrs []error
		inFlight = make(chan struct{}, maxTicksInFlight)
	)
	start := time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		sendMu.Lock()
		failed := len(sendErrs) > 0
		sendMu.Unlock()
		if failed {
			break
		}
		t0 := time.Now()
		if rate == 0 {
			n, err := r.sendTick(ctx, probeEvery, 0, track)
			if err != nil {
				sendErrs = append(sendErrs, err)
				break
			}
			ph.Sent += n
			continue
		}
		inFlight <- struct{}{}
		t0 = time.Now()
		r.genMu.Lock()
		b := r.fleet.Tick(r.tick, t0)
		tick := r.tick
		r.tick++
		r.genMu.Unlock()
		n := b.Records
		// Over most of the tick's interval.
		spread := time.Duration(0.8 * float64(n) / rate * float64(time.Second))
		lastSpread = spread
		ph.Sent += n
		sendWG.Go(func() {
			defer func() { <-inFlight }()
			if _, err := r.send(ctx, b, tick, t0, probeEvery, spread, track); err != nil {
				sendMu.Lock()
				sendErrs = append(sendErrs, err)
				sendMu.Unlock()
			}
		})
		time.Sleep(time.Until(t0.Add(time.Duration(float64(n) / rate * float64(time.Second)))))
	}
	sendWG.Wait()
	if err := errors.Join(sendErrs...); err != nil {
		stopPoll()
		<-pollDone
		return ph, err
	}
	sending := time.Since(start)
	// Wait for the sent rows (bounded), then for the last probes.
	want := n0 + uint64(ph.Sent)
	deadline := time.Now().Add(60 * time.Second)
	var n uint64
	for {
		if n, err = r.count(ctx); err != nil {
			break
		}
		if n >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	landedAt := time.Since(start)
	for range 40 {
		mu.Lock()
		left := len(pending)
		mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopPoll()
	<-pollDone
	cpu1 := r.cpu()
	ph.CH = map[string]uint64{}
	for k, v := range r.chEvents(ctx) {
		ph.CH[k] = v - ch0[k]
	}
	delay := r.scrapeHistogram("loader", "fleetmeter_loader_record_delay_seconds").since(delay0)
	batch := r.scrapeHistogram("rater", "fleetmeter_rater_batch_seconds").since(batch0)
	ph.LoaderDelay = [2]float64{delay.quantile(0.5), delay.quantile(0.99)}
	ph.RaterBatch = [2]float64{batch.quantile(0.5), batch.quantile(0.99)}
	insert := r.scrapeHistogram("loader", "fleetmeter_loader_insert_seconds", `table="rated_usage"`).since(insert0)
	ph.LoaderInsert = [2]float64{insert.quantile(0.5), insert.quantile(0.99)}
	ph.CPU = map[string]time.Duration{}
	for k, v := range cpu1 {
		ph.CPU[k] = v - cpu0[k]
	}
	ph.Landed = n - n0
	ph.Seconds = max(sending, landedAt).Seconds()
	ph.Sending, ph.Tail = sending.Seconds(), max(landedAt-sending, 0).Seconds()
	ph.Rate = float64(ph.Landed) / ph.Seconds
	ph.Latencies = lat
	for i := range byProto {
		slices.Sort(byProto[i])
	}
	ph.ByProto = byProto
	for i := range stages {
		slices.Sort(stages[i])
	}
	ph.Stages = stages
	ph.Lost = len(pending)
	slices.Sort(ph.Latencies)
	progress("pipeline %s: sent %d, landed %d in %.1fs (%.0f rows/s), %d probes timed, %d not seen; a tick's last acknowledgement, mean: MQTT %v, CoAP %v, HTTP %v (spread %v)",
		name, ph.Sent, ph.Landed, ph.Seconds, ph.Rate, len(lat), ph.Lost, r.tookMean(sim.MQTT), r.tookMean(sim.CoAP), r.tookMean(sim.HTTP), lastSpread)
	var ev []string
	for _, k := range chEventNames {
		if v, ok := ph.CH[k]; ok {
			ev = append(ev, fmt.Sprintf("%s %d", k, v))
		}
	}
	progress("  rater transactions %.0f; clickhouse during %s: %s", r.scrape("rater", `fleetmeter_rater_transactions_total{outcome="committed"}`)-txns0,
		name, strings.Join(ev, ", "))
	return ph, err
}

func (r *fleetRig) tookMean(p sim.Protocol) time.Duration {
	if r.tookTicks == 0 {
		return 0
	}
	return (r.tookSum[p] / time.Duration(r.tookTicks)).Round(time.Millisecond)
}

// quote is a ClickHouse string literal.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}

func quantile(v []time.Duration, q float64) time.Duration {
	if len(v) == 0 {
		return 0
	}
	return v[min(len(v)-1, int(q*float64(len(v))))]
}

// scrape sums the samples of a service's /metrics whose series (name and labels, as
// written) start with prefix.
func (r *fleetRig) scrape(service, prefix string) float64 {
	var sum float64
	for _, line := range r.metricLines(service) {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				sum += v
			}
		}
	}
	return sum
}

// metricLines is a service's /metrics, line by line (none when it does not answer).
func (r *fleetRig) metricLines(service string) []string {
	resp, err := http.Get("http://" + r.metrics[service] + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Split(string(b), "\n")
}

// diagnostics are the services' own counts over a stretch: how the work was batched.
type diagnostics struct {
	LoaderInserts, LoaderRows, RaterTxns, RaterRated float64
	Parts                                            uint64 // active parts of rated_usage at the end
}

func (r *fleetRig) diagnostics(ctx context.Context) diagnostics {
	d := diagnostics{
		LoaderInserts: r.scrape("loader", `fleetmeter_loader_insert_seconds_count{table="rated_usage"}`),
		LoaderRows:    r.scrape("loader", `fleetmeter_loader_rows_total{table="rated_usage"}`),
		RaterTxns:     r.scrape("rater", `fleetmeter_rater_transactions_total{outcome="committed"}`),
		RaterRated:    r.scrape("rater", "fleetmeter_rater_rated_total"),
	}
	_ = r.store.Conn().QueryRow(ctx, "SELECT count() FROM system.parts WHERE active AND database = '"+benchDatabase+
		"' AND table = 'rated_usage'").Scan(&d.Parts)
	return d
}

// histogram is a Prometheus histogram's cumulative bucket counts, by upper bound.
type histogram map[float64]float64

// scrapeHistogram reads the buckets of a histogram family, summed over the label sets
// whose labels hold each of labels (as written: `table="rated_usage"`).
func (r *fleetRig) scrapeHistogram(service, name string, labels ...string) histogram {
	h := histogram{}
lines:
	for _, line := range r.metricLines(service) {
		if !strings.HasPrefix(line, name+"_bucket{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		i := strings.LastIndex(line, `le="`) // the last label; "table=" holds `le="` too
		j := strings.LastIndexByte(line, ' ')
		if i < 0 || j < 0 {
			continue
		}
		le := line[i+4:]
		le = le[:strings.IndexByte(le, '"')]
		bound, err1 := strconv.ParseFloat(le, 64) // +Inf parses as +Inf
		v, err2 := strconv.ParseFloat(line[j+1:], 64)
		if err1 == nil && err2 == nil {
			h[bound] += v
		}
	}
	return h
}

// since is the observations made after a.
func (b histogram) since(a histogram) histogram {
	d := histogram{}
	for k, v := range b {
		d[k] = v - a[k]
	}
	return d
}

// quantile is the upper bound of the bucket holding quantile q (the histogram's
// resolution); 0 with no observations.
func (b histogram) quantile(q float64) float64 {
	bounds := make([]float64, 0, len(b))
	for k := range b {
		bounds = append(bounds, k)
	}
	slices.Sort(bounds)
	if len(bounds) == 0 || b[bounds[len(bounds)-1]] == 0 {
		return 0
	}
	total := b[bounds[len(bounds)-1]]
	for _, k := range bounds {
		if b[k] >= q*total {
			return k
		}
	}
	return bounds[len(bounds)-1]
}
