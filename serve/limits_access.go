package serve

import (
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// guardWrite protects a state-changing endpoint: a browser request from another origin is refused
// (403), whatever the token, so that no web page can enrol through a user's browser (CSRF); then
// the bearer token is required when one is configured (401).
//
// The origin check is net/http's CrossOriginProtection: with Sec-Fetch-Site (every current
// browser) only "same-origin" and "none" (typed by the user) pass; without it, an Origin header
// must name the request's own host. Requests without either (curl, scripts) pass.
func (s *Server) guardWrite(h http.HandlerFunc) http.HandlerFunc {
	cop := http.NewCrossOriginProtection()
	h = s.auth(h)
	return func(w http.ResponseWriter, r *http.Request) {
		if err := cop.Check(r); err != nil {
			s.writeErr(w, fail(http.StatusForbidden, "cross_origin", "cross-origin request refused: enrol from this server's own page or without a browser"))
			return
		}
		h(w, r)
	}
}

// auth requires the bearer token when one is configured. The scheme is case-insensitive
// (RFC 7235 §2.1).
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.Token == "" {
		return h
	}
	want := []byte(s.cfg.Token)
	return func(w http.ResponseWriter, r *http.Request) {
		scheme, got, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="protoherb"`)
			s.writeErr(w, fail(http.StatusUnauthorized, "unauthorized", "this endpoint needs Authorization: Bearer <token>"))
			return
		}
		h(w, r)
	}
}

// checkExposure refuses to serve on an address other machines can reach while anyone could enrol.
func (s *Server) checkExposure(addr net.Addr) error {
	return CheckExposure(addr, s.cfg.Token != "", s.cfg.OpenEnrolment)
}

// CheckExposure refuses a listening address that other machines can reach while anyone could
// enrol: without a token, enrolment must be opened explicitly (Config.OpenEnrolment,
// --open-enrolment). Serve checks it; a command may check it before loading a model.
func CheckExposure(addr net.Addr, token, openEnrolment bool) error {
	if token || openEnrolment || isLoopback(addr) {
		return nil
	}
	return fmt.Errorf("serve: %s is reachable from other machines and anyone could enrol species: give --token-file, listen on 127.0.0.1, or pass --open-enrolment", addr)
}

// isLoopback reports whether a listener's address is a loopback one (127.0.0.0/8, ::1). A
// wildcard address (0.0.0.0, ::) is not: it listens on every interface.
func isLoopback(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true // a socket file: its permissions decide who connects
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
