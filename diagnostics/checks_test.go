package diagnostics

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/pinhole-rtc/pinhole/api"
)

func TestDiagnosticsPublicIPChecks(t *testing.T) {
	local := []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("127.0.0.1")}
	cases := []struct {
		ips    []string
		status string
		seen   string
	}{
		{nil, api.StatusWarn, "no --public-ip"},
		{[]string{"10.0.0.5"}, api.StatusOK, "is an address of this host"},
		{[]string{"51.161.209.200"}, api.StatusOK, "a NAT, port forward or tunnel must forward UDP"},
		{[]string{"192.168.7.1"}, api.StatusWarn, "private address but not one of this host"},
		{[]string{"0.0.0.0"}, api.StatusFail, "cannot be a candidate"},
	}
	for _, tc := range cases {
		d := New(Deps{Config: Config{PublicIPs: tc.ips}})
		c := d.publicIPChecks(local)[0]
		if c.Status != tc.status || !strings.Contains(c.Seen, tc.seen) {
			t.Errorf("%v: %+v", tc.ips, c)
		}
	}
	if c, _ := New(Deps{Config: Config{BindIP: "10.9.9.9"}}).bindIPCheck(local); c.Status != api.StatusFail {
		t.Errorf("foreign bind address: %+v", c)
	}
	if _, ok := New(Deps{}).bindIPCheck(local); ok {
		t.Error("a bind check without a bind address")
	}
	d := New(Deps{Config: Config{UDPPorts: []int{10111, 10112}, PublicPorts: []int{20111}}})
	if c := d.portRangeCheck(); c.Status != api.StatusFail {
		t.Errorf("mismatched ranges: %+v", c)
	}
	d = New(Deps{Config: Config{UDPPorts: []int{10111, 10112}, PublicPorts: []int{20111, 20112}}})
	if c := d.portRangeCheck(); c.Status != api.StatusOK || !strings.Contains(c.Seen, "20111->10111") {
		t.Errorf("mapped ranges: %+v", c)
	}
}
