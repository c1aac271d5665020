package mediatest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v5/test"
)

// offerRecorder wraps a Publisher to keep the offer it sent.
type offerRecorder struct {
	*Publisher
	offer string
}

func (o *offerRecorder) Offer(ctx context.Context) (string, error) {
	sdp, err := o.Publisher.Offer(ctx)
	o.offer = sdp
	return sdp, err
}

// TestNegotiate runs the WHIP exchange against a minimal endpoint on
// loopback backed by a Pion answerer, and checks that the offer carries
// only loopback candidates.
func TestNegotiate(t *testing.T) {
	defer test.CheckRoutines(t)()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	fwd := newForwarder(t, CodecVP8)
	defer fwd.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /whip/{room}", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/sdp" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnsupportedMediaType)
			_, _ = io.WriteString(w, `{"status":415}`)
			return
		}
		if r.Header.Get("Authorization") != "Bearer secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		offer, _ := io.ReadAll(r.Body)
		ans, err := answerSDP(r.Context(), fwd.pub, string(offer))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Location", "/whip/"+r.PathValue("room")+"/abc")
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Type", "application/sdp")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, ans)
	})
	mux.HandleFunc("DELETE /whip/{room}/{id}", func(w http.ResponseWriter, r *http.Request) {})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// Wrong credentials: the error keeps the status.
	p0 := NewPublisher(t, PublisherOptions{Video: CodecVP8})
	defer func() { _ = p0.Close() }()
	_, err := Negotiate(ctx, srv.Client(), srv.URL+"/whip/lobby", p0, nil)
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without token: %v, want HTTPError 401", err)
	}

	p := &offerRecorder{Publisher: NewPublisher(t, PublisherOptions{Video: CodecVP8})}
	defer func() { _ = p.Close() }()
	res, err := Negotiate(ctx, srv.Client(), srv.URL+"/whip/lobby", p, http.Header{"Authorization": {"Bearer secret"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.URL != srv.URL+"/whip/lobby/abc" || res.ETag != `"v1"` || !strings.HasPrefix(res.Answer, "v=0") {
		t.Fatalf("resource %+v", res)
	}
	var candidates int
	for _, line := range strings.Split(p.offer, "\n") {
		if strings.HasPrefix(line, "a=candidate:") {
			candidates++
			if !strings.Contains(line, " 127.0.0.1 ") || !strings.Contains(line, " udp ") && !strings.Contains(line, " UDP ") {
				t.Fatalf("non-loopback or non-UDP candidate in offer: %s", line)
			}
		}
	}
	if candidates == 0 {
		t.Fatal("offer has no candidates")
	}
	if err := p.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if code, err := res.Delete(ctx, srv.Client()); err != nil || code != http.StatusOK {
		t.Fatalf("DELETE: %d %v", code, err)
	}
	_ = p.Close()
	_ = p0.Close()
	fwd.Close()
	srv.Close()
}
