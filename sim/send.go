package sim

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// How the fleet's devices send, shared by RunMixed and the benchmark's fleet rig.

// PostCoAP sends a meter's message as the meter does, a confirmable POST to
// /usage/<tenant>/<device> (the collector's dev mode path), and returns once it was
// answered 2.04.
func PostCoAP(ctx context.Context, c *udpclient.Conn, d *Device, payload []byte) error {
	resp, err := c.Post(ctx, "/usage/"+d.Tenant+"/"+d.ID, message.AppJSON, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("coap post: %w", err)
	}
	if resp.Code() != codes.Changed {
		return fmt.Errorf("coap post: answered %v", resp.Code())
	}
	return nil
}

// PostGateway posts an HTTP gateway's JSON Lines to the collector at addr with the
// tenant's key and returns once it was answered 202.
func PostGateway(ctx context.Context, hc *http.Client, addr, key string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/usage", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("http post: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("http post: answered %s", resp.Status)
	}
	return nil
}

// DropCDR writes a CDR file into a drop directory as a CHF writes it: under a temporary
// name, then renamed, so the collector never reads it half written.
func DropCDR(dir, name string, file []byte) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, file, 0o600); err != nil {
		return fmt.Errorf("cdr file: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("cdr file: %w", err)
	}
	return nil
}
