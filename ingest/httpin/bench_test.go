package httpin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"fleetmeter/record"
)

// ackSink acknowledges at once and keeps nothing.
type ackSink struct{}

func (ackSink) Enqueue(_ []record.Usage, done func(error))            { done(nil) }
func (ackSink) EnqueueRejects(_ []record.Rejection, done func(error)) { done(nil) }

func benchBody(lines int) []byte {
	var b []byte
	for i := range lines {
		b = fmt.Appendf(b, `{"event_id":"gw-%06d","tenant":"acme","device":"meter-%d","start_time":"2026-11-25T11:%02d:00Z",`+
			`"end_time":"2026-11-25T11:%02d:30Z","bytes_up":%d,"bytes_down":%d,"events":3,"rating_group":100,`+
			`"plmn":"262-01","cell":"262-01-1A2B3C","lat":52.52,"lon":13.405,"rat":"NB-IoT"}`+"\n",
			i, i%17, i%60, i%60, 1000+i, 30000+i)
	}
	return b
}

// bareServer is the floor: net/http reading the body and answering 202.
func bareServer(b *testing.B) string { return rawServer(b, nil) }

// scanServer is bareServer plus the least a server can do to know its body is JSON
// Lines, with the standard library: encoding/json.Valid on each line (it decodes nothing).
func scanServer(b *testing.B) string {
	return rawServer(b, func(body []byte) {
		for len(body) > 0 {
			var line []byte
			line, body, _ = bytes.Cut(body, []byte{'\n'})
			if len(line) > 0 && !json.Valid(line) {
				b.Error("invalid line")
			}
		}
	})
}

// rawServer is net/http reading the body (into a reused buffer when check is set, which
// then reads it) and answering 202.
func rawServer(b *testing.B, check func(body []byte)) string {
	bufs := sync.Pool{New: func() any { return new(bytes.Buffer) }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if check == nil {
			io.Copy(io.Discard, r.Body)
		} else {
			buf := bufs.Get().(*bytes.Buffer)
			buf.Reset()
			buf.ReadFrom(r.Body)
			check(buf.Bytes())
			bufs.Put(buf)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte("{\"accepted\":100}\n"))
	})}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + Path
}

// BenchmarkPost posts JSON Lines bodies over loopback HTTP with keep-alive, to the
// collector (fake sink acknowledging at once) and to a bare net/http handler in the
// same run. records/s counts the records of the bodies posted.
func BenchmarkPost(b *testing.B) {
	const lines = 100
	body := benchBody(lines)
	for _, server := range []string{"httpin", "bare"} {
		for _, conc := range []int{1, 8} {
			b.Run("server="+server+"/lines="+strconv.Itoa(lines)+"/conc="+strconv.Itoa(conc), func(b *testing.B) {
				url := benchURL(b, server)
				p := newPoster(b, url, body, conc)
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					p.work <- nil
				}
				p.stop()
				b.ReportMetric(float64(lines*b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

// BenchmarkPostVsBare runs the collector, the bare handler and the scanning one
// (scanServer) in rotating rounds of a few dozen requests each, so all see the same
// machine load (on a shared machine it swings within seconds) and the ratios are
// measured, not guessed from separate runs. ratio is the collector's records/s over the
// bare handler's, scan-ratio over the scanning handler's. cpu-ratio and scan-cpu-ratio
// are the same from the CPU time the process spent per request (clients, server, GC),
// which other load on the machine moves much less: with 8 clients every side is
// CPU-bound, so on an idle machine the two kinds agree. b.N counts the requests of each.
func BenchmarkPostVsBare(b *testing.B) {
	const lines, round = 100, 48
	body := benchBody(lines)
	for _, conc := range []int{1, 8} {
		b.Run("lines="+strconv.Itoa(lines)+"/conc="+strconv.Itoa(conc), func(b *testing.B) {
			servers := []string{"httpin", "bare", "scan"}
			posters := make([]*poster, len(servers))
			for i, server := range servers {
				posters[i] = newPoster(b, benchURL(b, server), body, conc)
			}
			wall := make([]time.Duration, len(servers))
			cpu := make([]time.Duration, len(servers))
			b.ReportAllocs()
			b.SetBytes(int64(len(servers) * len(body)))
			b.ResetTimer()
			for done := 0; done < b.N; done += round {
				k := min(round, b.N-done)
				for i, p := range posters {
					c0 := processCPU(b)
					wall[i] += p.run(k)
					cpu[i] += processCPU(b) - c0
				}
			}
			b.StopTimer()
			for _, p := range posters {
				p.stop()
			}
			b.ReportMetric(float64(lines*b.N)/wall[0].Seconds(), "records/s")
			b.ReportMetric(float64(lines*b.N)/wall[1].Seconds(), "bare-records/s")
			b.ReportMetric(float64(lines*b.N)/wall[2].Seconds(), "scan-records/s")
			b.ReportMetric(wall[1].Seconds()/wall[0].Seconds(), "ratio")
			b.ReportMetric(cpu[1].Seconds()/cpu[0].Seconds(), "cpu-ratio")
			b.ReportMetric(wall[2].Seconds()/wall[0].Seconds(), "scan-ratio")
			b.ReportMetric(cpu[2].Seconds()/cpu[0].Seconds(), "scan-cpu-ratio")
		})
	}
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchURL starts a server ("httpin": the collector on a sink acknowledging at once;
// "bare": bareServer; "scan": scanServer) for the benchmark and returns its URL.
func benchURL(b *testing.B, server string) string {
	switch server {
	case "bare":
		return bareServer(b)
	case "scan":
		return scanServer(b)
	}
	cfg := testConfig()
	cfg.MaxConcurrent = 1024
	// The limits are on the path (a bucket per request), never reached.
	cfg.TenantMaxConcurrent, cfg.TenantRate, cfg.TenantBurst = 1024, 1e9, 1<<30
	s := startServer(b, cfg, ackSink{})
	return "http://" + s.Addr() + Path
}

// poster is conc clients, each with its own keep-alive connection, posting body once per
// token sent on work (and calling its Done, if any, once answered).
type poster struct {
	b    *testing.B
	url  string
	body []byte
	work chan *sync.WaitGroup
	wg   sync.WaitGroup
}

func newPoster(b *testing.B, url string, body []byte, conc int) *poster {
	p := &poster{b: b, url: url, body: body, work: make(chan *sync.WaitGroup)}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for range conc {
		p.wg.Go(func() {
			for answered := range p.work {
				p.post(client)
				if answered != nil {
					answered.Done()
				}
			}
		})
	}
	return p
}

func (p *poster) post(client *http.Client) {
	req, _ := http.NewRequest(http.MethodPost, p.url, bytes.NewReader(p.body))
	req.Header.Set("Authorization", "Bearer "+acmeKey)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := client.Do(req) // on a client goroutine: Error, not Fatal
	if err != nil {
		p.b.Error(err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		p.b.Errorf("status %d", resp.StatusCode)
	}
}

// run posts n bodies and returns how long they took, the last answer included.
func (p *poster) run(n int) time.Duration {
	start := time.Now()
	var answered sync.WaitGroup
	answered.Add(n)
	for range n {
		p.work <- &answered
	}
	answered.Wait()
	return time.Since(start)
}

func (p *poster) stop() {
	close(p.work)
	p.wg.Wait()
}

// BenchmarkJSONLines is the body handler alone: parse and check 100 canonical lines,
// through the fast path (path=fast) and through the full parser alone (path=full).
func BenchmarkJSONLines(b *testing.B) {
	body := benchBody(100)
	lim := DefaultConfig().limits()
	for _, path := range []string{"fast", "full"} {
		b.Run("path="+path, func(b *testing.B) {
			var bt batch
			bt.lines.noFast = path == "full"
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				bt.reset("acme", now, lim, 1000, nil)
				bt.jsonLines(body)
				if bt.nerr != 0 {
					b.Fatal(bt.errs)
				}
			}
			b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkJSONLinesFastVsFull times the body handler with the fast path and with the
// full parser alone in alternating rounds, so both see the same machine load; ratio is
// the full parser's time over the fast path's.
func BenchmarkJSONLinesFastVsFull(b *testing.B) {
	const round = 50
	body := benchBody(100)
	lim := DefaultConfig().limits()
	var fast, full batch
	full.lines.noFast = true
	var took [2]time.Duration
	b.ReportAllocs()
	for done := 0; done < b.N; done += round {
		for i, bt := range []*batch{&fast, &full} {
			start := time.Now()
			for range min(round, b.N-done) {
				bt.reset("acme", now, lim, 1000, nil)
				bt.jsonLines(body)
			}
			took[i] += time.Since(start)
		}
	}
	if fast.nerr+full.nerr != 0 {
		b.Fatal(fast.errs, full.errs)
	}
	b.ReportMetric(float64(took[0].Nanoseconds())/float64(100*b.N), "fast-ns/line")
	b.ReportMetric(float64(took[1].Nanoseconds())/float64(100*b.N), "full-ns/line")
	b.ReportMetric(took[1].Seconds()/took[0].Seconds(), "ratio")
}
