package media_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/pinhole-rtc/pinhole/media"
	"github.com/pinhole-rtc/pinhole/media/mediatest"
)

// seqCounter counts how often each RTP sequence number arrived.
type seqCounter struct {
	mu      sync.Mutex
	count   map[uint16]int
	total   int
	last    uint16
	ssrc    uint32
	changed chan struct{}
}

func (c *seqCounter) add(seq uint16, ssrc uint32) {
	c.mu.Lock()
	c.count[seq]++
	c.total++
	c.last, c.ssrc = seq, ssrc
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// waitFor waits until check (run under mu) holds.
func (c *seqCounter) waitFor(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.After(wait)
	for {
		c.mu.Lock()
		ok, ch := check(), c.changed
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A viewer's NACK is answered end to end: pinhole resends the packet from
// the publisher track's shared history through the viewer's own SRTP
// session, with the viewer's sequence number. The viewer is a raw Pion peer
// (mediatest.Viewer does not expose sequence numbers) whose SRTP replay
// protection is off, so the resent copy of a packet it already has gets
// through to be counted.
func TestViewerNACKIsAnswered(t *testing.T) {
	f := newEngine(t, 2, nil)
	f.publish(t, "r", mediatest.PublisherOptions{Video: mediatest.CodecVP8})

	m := &webrtc.MediaEngine{}
	vp8, err := mediatest.VideoCodecParameters(mediatest.CodecVP8)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterCodec(vp8, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	lo := net.IPv4(127, 0, 0, 1)
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(lo) })
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.DisableSRTPReplayProtection(true)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)).
		NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	var readers sync.WaitGroup
	t.Cleanup(func() {
		_ = pc.Close()
		readers.Wait()
	})
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	seqs := &seqCounter{count: map[uint16]int{}, changed: make(chan struct{})}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				p, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				seqs.add(p.SequenceNumber, uint32(tr.SSRC()))
			}
		}()
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	ans, err := f.e.Watch(ctxT(t), media.SessionRequest{ID: newID(), Room: "r", Offer: pc.LocalDescription().SDP, TrustLocalCandidates: true})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.SDP}); err != nil {
		t.Fatal(err)
	}

	seqs.waitFor(t, "60 video packets", func() bool { return seqs.total >= 60 })
	seqs.mu.Lock()
	seq, ssrc := seqs.last-10, seqs.ssrc
	once := seqs.count[seq] == 1
	seqs.mu.Unlock()
	if !once {
		t.Fatalf("packet %d did not arrive exactly once before the NACK", seq)
	}
	if err := pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{
		MediaSSRC: ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{seq}),
	}}); err != nil {
		t.Fatal(err)
	}
	seqs.waitFor(t, "the retransmission", func() bool { return seqs.count[seq] >= 2 })
}
