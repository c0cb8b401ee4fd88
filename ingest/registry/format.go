package registry

import (
	"encoding/hex"
	"strconv"
)

// Format renders devices as a registry file that Parse reads back to the same entries,
// for programs that provision devices (the standalone pipeline writes its simulated
// fleet's registry with it). Values are double-quoted; a PSK is written as "0x" + hex.
func Format(strict bool, devices []Device) []byte {
	b := append([]byte("strict: "), strconv.FormatBool(strict)...)
	if len(devices) == 0 {
		return append(b, "\ndevices: []\n"...)
	}
	b = append(b, "\ndevices:\n"...)
	field := func(b []byte, first bool, key, v string) []byte {
		if v == "" {
			return b
		}
		if first {
			b = append(b, "  - "...)
		} else {
			b = append(b, "    "...)
		}
		b = append(b, key...)
		b = append(b, ": "...)
		b = strconv.AppendQuote(b, v)
		return append(b, '\n')
	}
	for _, d := range devices {
		b = field(b, true, "tenant", d.Tenant)
		b = field(b, false, "device", d.Device)
		b = field(b, false, "coap_psk_identity", d.CoAPPSKIdentity)
		if len(d.CoAPPSK) > 0 {
			b = field(b, false, "coap_psk", "0x"+hex.EncodeToString(d.CoAPPSK))
		}
		b = field(b, false, "mqtt_username", d.MQTTUsername)
		b = field(b, false, "mqtt_password_hash", string(d.MQTTPasswordHash))
	}
	return b
}
