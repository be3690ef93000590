package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kilnci/kiln/proto/kilnpb"
)

// defaultMaster is where `ci server` listens unless told otherwise.
const defaultMaster = "127.0.0.1:7070"

// dialTimeout bounds one TCP connect, so that a master behind a firewall
// that drops packets fails in seconds rather than after the kernel's minutes.
const dialTimeout = 10 * time.Second

// clientOptions are the flags of every command that talks to the master.
// Embed it in a command's options and call addFlags on the command.
type clientOptions struct {
	master    string
	token     string
	tokenFile string
	output    outputFormat
	now       func() time.Time
}

func newClientOptions(e *env) clientOptions {
	return clientOptions{now: e.now}
}

// addFlags declares --master, --token, --token-file and -o on cmd, each
// with its KILN_* variable.
func (o *clientOptions) addFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&o.master, "master", defaultMaster, "address of the master's API")
	fs.StringVar(&o.token, "token", "", "admin token, needed by calls that change things")
	fs.StringVar(&o.tokenFile, "token-file", "",
		"file holding the admin token (the master writes DATA/admin.token)")
	fs.VarP(&o.output, "output", "o", "output format: table or json")

	bindEnv(fs, "master", "KILN_MASTER")
	bindEnv(fs, "token", "KILN_TOKEN")
	bindEnv(fs, "token-file", "KILN_TOKEN_FILE")
	bindEnv(fs, "output", "KILN_OUTPUT")
}

// wantJSON reports whether the user asked for -o json.
func (o *clientOptions) wantJSON() bool {
	return o.output == formatJSON
}

// client is one connection to the master. Close it when done.
type client struct {
	kilnpb.MasterClient
	conn  *grpc.ClientConn
	addr  string
	token string // empty when none was given

	mu      sync.Mutex // guards dialErr
	dialErr error      // the latest failed connect, kept to explain Unavailable
}

// dial prepares a connection to the master of the flags, with their token.
func (o *clientOptions) dial(cmd *cobra.Command) (*client, error) {
	token, err := o.loadToken(cmd)
	if err != nil {
		return nil, err
	}
	return connect(o.master, token)
}

// connect prepares a connection to the master at addr that sends token
// (none when empty) with every call. No packet leaves before the first
// call, so a master that is down shows in the call's error (callError).
func connect(addr, token string) (*client, error) {
	c := &client{addr: addr, token: token}
	opts := []grpc.DialOption{
		// TODO(kiln): TLS. The master serves plaintext gRPC for now, so the
		// token crosses the network in clear: keep the master on loopback
		// until it serves TLS and this dials with the master's CA.
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(c.dialContext),
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}

	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("master address %q: %w", addr, err)
	}
	c.conn = conn
	c.MasterClient = kilnpb.NewMasterClient(conn)
	return c, nil
}

// Close ends the connection.
func (c *client) Close() error {
	return c.conn.Close()
}

// dialContext connects like grpc would, but remembers why a connect failed:
// gRPC's own message for it is a nest of "connection error: desc = ...".
func (c *client) dialContext(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)

	c.mu.Lock()
	c.dialErr = err
	c.mu.Unlock()
	return conn, err
}

// loadToken picks the token: a flag on the command line wins over the
// environment, and at the same level a literal token wins over a file.
func (o *clientOptions) loadToken(cmd *cobra.Command) (string, error) {
	fs := cmd.Flags()
	if fs.Changed("token") && fs.Changed("token-file") {
		return "", usageErrorf(cmd, "give --token or --token-file, not both")
	}

	switch {
	case fs.Changed("token"):
		return strings.TrimSpace(o.token), nil
	case fs.Changed("token-file"):
		return readSecret(o.tokenFile, "token")
	case o.token != "":
		return strings.TrimSpace(o.token), nil
	case o.tokenFile != "":
		return readSecret(o.tokenFile, "token")
	}
	return "", nil
}

// readSecret reads a file holding a token or a secret, without the white
// space around it; what names it in errors ("token", "webhook secret").
func readSecret(path, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read the %s file: %w", what, err)
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return "", fmt.Errorf("%s file %s is empty", what, path)
	}
	return secret, nil
}

// bearer is the "authorization: Bearer <token>" metadata of every call.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false while the master serves plaintext (see
// the TODO in connect).
func (b bearer) RequireTransportSecurity() bool {
	return false
}

// masterError is a call that failed: line is the sentence for the user,
// err the gRPC status behind it.
type masterError struct {
	line string
	err  error
}

func (e *masterError) Error() string { return e.line }
func (e *masterError) Unwrap() error { return e.err }

// errInterrupted ends a command whose context was cancelled (Ctrl-C).
var errInterrupted = errors.New("interrupted")

// callError turns a failed call into one line: the master's own message,
// which is written for users, with advice where the call never reached the
// master or lacked the token.
func (c *client) callError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errInterrupted
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}

	msg := st.Message()
	if msg == "" {
		msg = st.Code().String()
	}
	switch st.Code() {
	case codes.Unavailable:
		msg = c.unreachable(msg)
	case codes.Unauthenticated:
		msg = c.unauthenticated(msg)
	}
	return &masterError{line: msg, err: err}
}

// unreachable explains a call that found no master. Unavailable can also
// come from a master that is stopping; the advice then still fits.
func (c *client) unreachable(msg string) string {
	c.mu.Lock()
	if c.dialErr != nil {
		msg = c.dialErr.Error()
	}
	c.mu.Unlock()
	return fmt.Sprintf("cannot reach the master at %s: %s "+
		"(is `ci server` running? set --master or KILN_MASTER)", c.addr, msg)
}

// unauthenticated says how to pass the token, or that the one given is
// wrong.
func (c *client) unauthenticated(msg string) string {
	if c.token == "" {
		return msg + ": pass the admin token with --token-file DATA/admin.token " +
			"(or --token, KILN_TOKEN, KILN_TOKEN_FILE)"
	}
	return msg + ": use the token in the master's DATA/admin.token"
}

// outputFormat is the value of -o. The zero value is table.
type outputFormat string

const (
	formatTable outputFormat = "table"
	formatJSON  outputFormat = "json"
)

func (f *outputFormat) String() string {
	if *f == "" {
		return string(formatTable)
	}
	return string(*f)
}

func (f *outputFormat) Set(s string) error {
	switch outputFormat(s) {
	case formatTable, formatJSON:
		*f = outputFormat(s)
		return nil
	}
	return fmt.Errorf("want table or json, not %q", s)
}

func (f *outputFormat) Type() string {
	return "format"
}

// writeJSON prints v as indented JSON and a line break.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "->" and "<none>" stay readable in jq
	return enc.Encode(v)
}

// writeJSONLine prints v as one line of JSON, for streams (JSON Lines).
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table aligns rows of cells into columns for people.
type table struct {
	tw *tabwriter.Writer
}

// newTable starts a table on w, with a header row unless header is empty.
func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

// row adds one row. An empty cell shows as "-", so that columns stay
// readable with awk, and line breaks and tabs inside a cell become spaces.
func (t *table) row(cells ...string) {
	clean := make([]string, len(cells))
	for i, c := range cells {
		clean[i] = cell(c)
	}
	fmt.Fprintln(t.tw, strings.Join(clean, "\t"))
}

// subRow adds a label and its value as row does, the label indented under
// the row before it: row itself trims the spaces around a cell.
func (t *table) subRow(label, value string) {
	fmt.Fprintln(t.tw, "  "+cell(label)+"\t"+cell(value))
}

// cell cleans one cell of a row.
func cell(c string) string {
	c = strings.ReplaceAll(oneLine(c), "\t", " ")
	if c == "" {
		return "-"
	}
	return c
}

// flush writes the aligned rows.
func (t *table) flush() error {
	return t.tw.Flush()
}

// timestamp is an API time (Unix milliseconds, zero for "not yet") that
// encodes as an RFC 3339 string in UTC, or null for zero.
type timestamp int64

// rfc3339Milli is RFC 3339 with the API's millisecond precision.
const rfc3339Milli = "2006-01-02T15:04:05.000Z07:00"

func (t timestamp) MarshalJSON() ([]byte, error) {
	if t == 0 {
		return []byte("null"), nil
	}
	s := time.UnixMilli(int64(t)).UTC().Format(rfc3339Milli)
	return json.Marshal(s)
}

// when shows an API time for people: local time and how long ago.
func when(ms int64, now time.Time) string {
	if ms == 0 {
		return ""
	}
	t := time.UnixMilli(ms)
	return t.Local().Format("2006-01-02 15:04:05") + " (" + ago(ms, now) + ")"
}

// ago says how long before now the API time ms was, as "2s ago"; "" for
// zero. A time ahead of now (clocks of two machines) counts as now.
func ago(ms int64, now time.Time) string {
	if ms == 0 {
		return ""
	}
	return roughDuration(now.Sub(time.UnixMilli(ms))) + " ago"
}

// roughDuration shows d in its largest whole unit, as "ago" and "in" read
// it: 2s, 5m, 3h, 4d. A negative d counts as zero.
func roughDuration(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}

// span is the duration from start to end in API times; a started thing
// that has not ended runs until now. "" when it has not started.
func span(start, end int64, now time.Time) string {
	if start == 0 {
		return ""
	}
	if end == 0 {
		end = now.UnixMilli()
	}
	return humanDuration(msDuration(end - start))
}

// msDuration converts an API duration in milliseconds.
func msDuration(ms int64) time.Duration {
	return time.Duration(ms) * time.Millisecond
}

// humanDuration shows d the way people read build times: 340ms, 1.2s,
// 2m05s, 1h02m.
func humanDuration(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		// Truncated rather than rounded, so that 59.96s does not read 60.0s.
		tenths := d / (100 * time.Millisecond)
		return fmt.Sprintf("%d.%ds", tenths/10, tenths%10)
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, d%time.Minute/time.Second)
	}
	return fmt.Sprintf("%dh%02dm", d/time.Hour, d%time.Hour/time.Minute)
}

// short cuts a hash to n characters for a table; JSON keeps it whole.
func short(hash string, n int) string {
	if len(hash) <= n {
		return hash
	}
	return hash[:n]
}

// shortDigest cuts "sha256:<hex>" to the same prefix and 12 hex digits.
func shortDigest(digest string) string {
	algo, hex, ok := strings.Cut(digest, ":")
	if !ok {
		return short(digest, 12)
	}
	return algo + ":" + short(hex, 12)
}
