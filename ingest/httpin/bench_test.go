package httpin

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"

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
func bareServer(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
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
				var url string
				if server == "bare" {
					url = bareServer(b)
				} else {
					cfg := testConfig()
					cfg.MaxConcurrent = 1024
					// The limits are on the path (a bucket per request), never reached.
					cfg.TenantMaxConcurrent, cfg.TenantRate, cfg.TenantBurst = 1024, 1e9, 1<<30
					s := startServer(b, cfg, ackSink{})
					url = "http://" + s.Addr() + Path
				}
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
				post := func() {
					req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+acmeKey)
					req.Header.Set("Content-Type", "application/x-ndjson")
					resp, err := client.Do(req) // on a client goroutine: Error, not Fatal
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						b.Errorf("status %d", resp.StatusCode)
					}
				}
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				// conc clients, each with its own keep-alive connection.
				work := make(chan struct{})
				var wg sync.WaitGroup
				for range conc {
					wg.Go(func() {
						for range work {
							post()
						}
					})
				}
				for b.Loop() {
					work <- struct{}{}
				}
				close(work)
				wg.Wait()
				b.ReportMetric(float64(lines*b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

// BenchmarkJSONLines is the body handler alone: parse and check 100 canonical lines.
func BenchmarkJSONLines(b *testing.B) {
	body := benchBody(100)
	var bt batch
	lim := DefaultConfig().limits()
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
}
