package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeJSON feeds arbitrary bodies and content types to the one JSON
// decoder of the API, for both request bodies. Whatever the input: no
// panic, every refusal is a 4xx *Error whose problem+json answer is valid
// JSON, and whatever is accepted has passed validation.
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []struct{ ct, body string }{
		{"application/json", `{"name":"studio","metadata":{"k":"v"},"publish_token":"0123456789"}`},
		{"", `{"role":"publisher","sdp":"v=0\r\n","user_id":"u","metadata":{"a":"b"},"publisher_id":"p"}`},
		{"application/json; charset=utf-8", `{"role":"viewer","sdp":"v=0"}`},
		{"text/plain", `{}`},
		{"", `{"name":1}`},
		{"", `{"name":"x"}{"name":"y"}`},
		{"", `{"metadata":{"` + strings.Repeat("k", 70) + `":"v"}}`},
		{"", `[`},
		{"", "\xff\xfe"},
	} {
		f.Add(seed.ct, seed.body)
	}
	v := NewValidator()
	f.Fuzz(func(t *testing.T, ct, body string) {
		for _, dst := range []any{&CreateRoomRequest{}, &CreateSessionRequest{}} {
			r := httptest.NewRequest("POST", "/api/v1/rooms", strings.NewReader(body))
			if ct != "" {
				r.Header.Set("Content-Type", ct)
			}
			w := httptest.NewRecorder()
			err := DecodeJSON(w, r, v, dst)
			if err == nil {
				// Accepted: validation ran and passed, so the bounds hold.
				switch d := dst.(type) {
				case *CreateRoomRequest:
					if !ValidRoomName(d.Name) || len(d.Metadata) > 32 {
						t.Fatalf("accepted room %+v", d)
					}
				case *CreateSessionRequest:
					if (d.Role != "publisher" && d.Role != "viewer") || d.SDP == "" || len(d.SDP) > 65536 ||
						utf8.RuneCountInString(d.UserID) > 128 || len(d.Metadata) > 32 {
						t.Fatalf("accepted session request %+v", d)
					}
				}
				continue
			}
			e, ok := AsError(err)
			if !ok {
				t.Fatalf("refusal %v is not an *api.Error (it would be a 500)", err)
			}
			if e.Status < 400 || e.Status > 499 {
				t.Fatalf("refusal status %d for %q", e.Status, body)
			}
			WriteProblem(w, r, e)
			if ct := w.Header().Get("Content-Type"); ct != ProblemContentType {
				t.Fatalf("problem Content-Type %q", ct)
			}
			var p map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
				t.Fatalf("problem body is not JSON: %v: %q", err, w.Body.String())
			}
			if p["status"] != float64(e.Status) {
				t.Fatalf("problem status %v, answer %d", p["status"], e.Status)
			}
		}
	})
}

// FuzzReadSDP feeds arbitrary bodies to the SDP and trickle-fragment readers.
func FuzzReadSDP(f *testing.F) {
	f.Add("application/sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")
	f.Add("application/trickle-ice-sdpfrag", "a=ice-ufrag:x\r\na=candidate:1 1 udp 1 127.0.0.1 1 typ host\r\n")
	f.Add("application/sdp; charset=x", "  \r\n v=0")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, ct, body string) {
		for _, read := range []func(http.ResponseWriter, *http.Request) (string, error){ReadSDP, ReadFragment} {
			r := httptest.NewRequest("POST", "/whip/r", strings.NewReader(body))
			if ct != "" {
				r.Header.Set("Content-Type", ct)
			}
			w := httptest.NewRecorder()
			got, err := read(w, r)
			if err != nil {
				e, ok := AsError(err)
				if !ok || e.Status < 400 || e.Status > 499 {
					t.Fatalf("refusal %v is not a 4xx *api.Error", err)
				}
				continue
			}
			if len(got) > MaxSDPBody {
				t.Fatalf("accepted %d bytes, cap %d", len(got), MaxSDPBody)
			}
		}
	})
}
