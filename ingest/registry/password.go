package registry

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// PasswordHash is an MQTT password as the registry stores it: Mosquitto's password-file
// format $7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>, so one string works in
// a Mosquitto password_file and in the standalone's embedded broker. The registry never
// holds a password itself. It prints redacted (fmt, slog) so a logged Device shows no hash.
type PasswordHash string

// String redacts the hash.
func (h PasswordHash) String() string {
	if h == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts the hash for %#v.
func (h PasswordHash) GoString() string { return strconv.Quote(h.String()) }

// LogValue redacts the hash for slog.
func (h PasswordHash) LogValue() slog.Value { return slog.StringValue(h.String()) }

// PasswordIterations is the PBKDF2 iteration count of HashPassword: mosquitto_passwd's
// default. Device passwords are machine-generated secrets (128 bits or more), which no
// iteration count makes guessable; the hash keeps a leaked registry from being a list of
// credentials.
const PasswordIterations = 101

const (
	saltLen       = 12 // as mosquitto_passwd
	hashLen       = 64 // SHA-512 output
	maxIterations = 1_000_000
)

// HashPassword hashes a password into the registry's (and Mosquitto's) format with a
// random salt.
func HashPassword(password string) (PasswordHash, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("registry: salt: %w", err)
	}
	return hashWith(password, salt, PasswordIterations)
}

func hashWith(password string, salt []byte, iterations int) (PasswordHash, error) {
	sum, err := pbkdf2.Key(sha512.New, password, salt, iterations, hashLen)
	if err != nil {
		return "", fmt.Errorf("registry: hash password: %w", err)
	}
	return PasswordHash("$7$" + strconv.Itoa(iterations) + "$" + base64.StdEncoding.EncodeToString(salt) +
		"$" + base64.StdEncoding.EncodeToString(sum)), nil
}

// Check reports whether password matches h, in time independent of where they differ.
// A malformed hash matches nothing.
func (h PasswordHash) Check(password string) bool {
	iterations, salt, sum, err := h.parse()
	if err != nil {
		return false
	}
	got, err := pbkdf2.Key(sha512.New, password, salt, iterations, len(sum))
	return err == nil && subtle.ConstantTimeCompare(got, sum) == 1
}

// Validate reports why h is not a hash Check can use.
func (h PasswordHash) Validate() error {
	_, _, _, err := h.parse()
	return err
}

var errHashFormat = errors.New("not a $7$<iterations>$<salt>$<hash> PBKDF2-SHA512 hash (mosquitto_passwd's format)")

func (h PasswordHash) parse() (iterations int, salt, sum []byte, err error) {
	parts := strings.Split(string(h), "$")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "7" {
		return 0, nil, nil, errHashFormat
	}
	iterations, err = strconv.Atoi(parts[2])
	if err != nil || iterations < 1 || iterations > maxIterations {
		return 0, nil, nil, fmt.Errorf("iterations must be 1..%d", maxIterations)
	}
	salt, err = base64.StdEncoding.DecodeString(parts[3])
	if err != nil || len(salt) == 0 {
		return 0, nil, nil, errors.New("salt is not base64")
	}
	sum, err = base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(sum) != hashLen {
		return 0, nil, nil, fmt.Errorf("hash is not %d bytes of base64", hashLen)
	}
	return iterations, salt, sum, nil
}
