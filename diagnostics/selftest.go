package diagnostics

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pinhole-rtc/pinhole/api"
	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/record"
	"github.com/pinhole-rtc/pinhole/store"
)

// Self-test settings.
const (
	// SelfTestRoom is the room self-test sessions publish into; a name no
	// person picks by chance, so no viewer receives the test pattern.
	SelfTestRoom = "pinhole-selftest"
	// defaultSelfTestTimeout covers ICE (a round trip or two through the
	// mapping), DTLS, and the first media packets, with a wide margin.
	defaultSelfTestTimeout = 15 * time.Second
)

// HandleSelfTest answers POST /api/v1/diagnostics/selftest: an internal
// client publishes to pinhole through the public address of a leased port
// and reports whether media arrived. That proves the mapping wherever it
// also forwards traffic from this host itself (hairpin NAT, FRP).
//
//	@Summary	Self-test: an internal client connects through the public address and sends media
//	@Tags		diagnostics
//	@Accept		json
//	@Produce	json
//	@Param		body	body		api.SelfTestRequest	false	"options"
//	@Success	200		{object}	api.SelfTestResult
//	@Failure	409		{object}	api.Problem
//	@Failure	503		{object}	api.Problem
//	@Security	AdminToken
//	@Failure	401	{object}	api.Problem	"Admin token missing or wrong (--admin-token)"
//	@Router		/api/v1/diagnostics/selftest [post]
func (d *Diagnostics) HandleSelfTest(w http.ResponseWriter, r *http.Request) error {
	var req api.SelfTestRequest
	if r.ContentLength != 0 {
		if err := api.DecodeJSON(w, r, d.validate, &req); err != nil {
			return err
		}
	}
	if !d.selftest.TryLock() {
		return api.Errorf(http.StatusConflict, "a self-test is already running; retry in a few seconds").WithHeader("Retry-After", "5")
	}
	defer d.selftest.Unlock()
	res, err := d.SelfTest(r.Context(), time.Duration(req.TimeoutMillis)*time.Millisecond)
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, res)
}

// SelfTest runs the self-test; timeout zero means 15 s. An error means the
// test could not run (no free port); a failed test is a result.
func (d *Diagnostics) SelfTest(ctx context.Context, timeout time.Duration) (api.SelfTestResult, error) {
	if timeout <= 0 {
		timeout = defaultSelfTestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := api.SelfTestResult{Status: api.StatusFail}

	client, err := media.NewSelfTestClient(d.cfg.SelfTestIPs)
	if err != nil {
		return res, err
	}
	defer client.Close()
	offer, err := client.Offer(ctx)
	if err != nil {
		return res, err
	}
	start := time.Now()
	// The session is opened and recorded like any WHIP session; its first
	// timeline entry marks it for Diagnose: the offer had no candidates on
	// purpose.
	sess, ans, err := d.sessions.Open(ctx, record.OpenRequest{
		Room: SelfTestRoom, Role: store.RolePublisher, UserID: "pinhole-selftest", Offer: offer,
		Timeline: []store.Event{{At: start.UTC(), Kind: "selftest",
			Detail: "internal client; offer sent without candidates so that only checks through the public address count"}},
	})
	if err != nil {
		return res, err
	}
	id := sess.ID
	res.SessionID, res.Target, res.LocalPort = id, ans.PublicAddr, ans.LocalPort
	defer func() { _ = d.sessions.Close(context.WithoutCancel(ctx), id, "self-test finished") }()

	connected, err := client.Connect(ctx, ans.SDP)
	if err != nil {
		return res, fmt.Errorf("self-test answer: %w", err)
	}
	if connected {
		res.ConnectMillis = float64(time.Since(start).Microseconds()) / 1000
		client.SendMedia(ctx)
	}

	// Judge from the server's own record, as any session is judged.
	d.rec.Sync()
	s, err := d.store.GetSession(context.WithoutCancel(ctx), id)
	if err == nil {
		diag := Diagnose(s, Options{Now: time.Now(), NoPacketAfter: min(d.diagOpts().NoPacketAfter, timeout/2), NoMediaAfter: timeout / 4})
		res.Diagnosis = &diag
		res.PacketsReceived = s.Counters.PacketsIn
		if diag.Verdict.Status == api.StatusOK || hasEvent(s, "first-rtp-in") {
			res.Status = api.StatusOK
		}
	}
	for _, p := range d.engine.Ports() {
		if p.LocalPort == res.LocalPort && res.PacketsReceived == 0 {
			res.PacketsReceived = p.PacketsIn
		}
	}
	if res.Status == api.StatusOK {
		res.Summary = fmt.Sprintf("media flowed: the internal client reached pinhole through %s (local UDP %d) and connected in %.0f ms",
			res.Target, res.LocalPort, res.ConnectMillis)
		if d.targetIsLocal(res.Target) {
			res.Summary += "; that address belongs to this host, so no port mapping was involved: test from outside to check one"
		}
		return res, nil
	}
	res.Summary = fmt.Sprintf("the internal client could not send media to pinhole through %s (local UDP %d)", res.Target, res.LocalPort)
	res.Fix = fmt.Sprintf("if clients outside can connect, this host's router simply does not loop back (hairpin) traffic to its own public address and nothing is wrong; "+
		"otherwise the mapping %s -> this host's UDP %d is broken: check the port forward, FRP udp proxy or firewall", res.Target, res.LocalPort)
	if v := res.Diagnosis; v != nil && v.Verdict.Status != api.StatusOK {
		switch v.Verdict.Hop {
		case "mapping":
			// The offer carried no candidates on purpose; what counts is
			// that no check came through the mapping.
			res.Summary += fmt.Sprintf(": no packet reached local UDP %d", res.LocalPort)
		default:
			res.Summary += ": " + v.Verdict.Summary
			if v.Verdict.Fix != "" {
				res.Fix = v.Verdict.Fix
			}
		}
	}
	return res, nil
}

// targetIsLocal reports whether the advertised address is one of this
// host's own, in which case the self-test proves no mapping.
func (d *Diagnostics) targetIsLocal(target string) bool {
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		return false
	}
	local, _ := d.cfg.Interfaces()
	return ap.Addr().IsLoopback() || slices.Contains(local, ap.Addr().Unmap())
}

func hasEvent(s store.Session, kind string) bool {
	for _, e := range s.Events {
		if strings.EqualFold(e.Kind, kind) {
			return true
		}
	}
	return false
}
