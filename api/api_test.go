package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDecodeJSON(t *testing.T) {
	v := NewValidator()
	cases := []struct {
		name, ct, body string
		status         int
		field          string
	}{
		{"ok", "application/json", `{"name":"studio.1_a-b"}`, 0, ""},
		{"no content type (a cross-site simple request could send it)", "-", `{"name":"studio"}`, 415, ""},
		{"form type (sent cross-site without a preflight)", "application/x-www-form-urlencoded", `{"name":"studio"}`, 415, ""},
		{"ok with charset", "application/json; charset=utf-8", `{"name":"studio"}`, 0, ""},
		{"wrong content type", "text/plain", `{"name":"studio"}`, 415, ""},
		{"empty", "", ``, 400, ""},
		{"syntax", "", `{"name":}`, 400, ""},
		{"truncated", "", `{"name":"x"`, 400, ""},
		{"unknown field", "", `{"name":"x","nope":1}`, 400, "nope"},
		{"wrong type", "", `{"name":1}`, 400, "name"},
		{"not an object", "", `[1]`, 400, ""},
		{"trailing", "", `{"name":"x"}{"name":"y"}`, 400, ""},
		{"required", "", `{}`, 400, "name"},
		{"room name too long", "", `{"name":"` + strings.Repeat("a", 65) + `"}`, 400, "name"},
		{"room name bad chars", "", `{"name":"a/b"}`, 400, "name"},
		{"metadata value too long", "", `{"name":"x","metadata":{"k":"` + strings.Repeat("v", 1025) + `"}}`, 400, "metadata[k]"},
		{"too large", "", `{"name":"` + strings.Repeat("a", MaxJSONBody) + `"}`, 413, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
			switch tc.ct {
			case "-":
			case "":
				r.Header.Set("Content-Type", JSONContentType)
			default:
				r.Header.Set("Content-Type", tc.ct)
			}
			var dst CreateRoomRequest
			err := DecodeJSON(httptest.NewRecorder(), r, v, &dst)
			if tc.status == 0 {
				if err != nil {
					t.Fatalf("unexpected %v", err)
				}
				return
			}
			e, ok := AsError(err)
			if !ok || e.Status != tc.status {
				t.Fatalf("err %v, want status %d", err, tc.status)
			}
			if tc.field != "" {
				found := false
				for _, f := range e.Fields {
					found = found || f.Field == tc.field
				}
				if !found {
					t.Errorf("fields %+v do not name %q", e.Fields, tc.field)
				}
			}
		})
	}
}

func TestReadSDP(t *testing.T) {
	cases := []struct {
		name, ct, body string
		status         int
	}{
		{"ok", "application/sdp", "v=0\r\n", 0},
		{"ok leading newline", "application/sdp", "\r\nv=0\r\n", 0},
		{"no content type", "", "v=0\r\n", 415},
		{"json", "application/json", "v=0\r\n", 415},
		{"empty", "application/sdp", "", 400},
		{"garbage", "application/sdp", "hello", 400},
		{"too large", "application/sdp", "v=0\r\n" + strings.Repeat("a=x\r\n", MaxSDPBody/5+1), 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
			if tc.ct != "" {
				r.Header.Set("Content-Type", tc.ct)
			}
			_, err := ReadSDP(httptest.NewRecorder(), r)
			if tc.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			e, ok := AsError(err)
			if !ok || e.Status != tc.status {
				t.Fatalf("err %v, want %d", err, tc.status)
			}
			if tc.status == 415 && e.Header.Get("Accept-Post") != SDPContentType {
				t.Errorf("415 without Accept-Post")
			}
		})
	}
}

func TestProblemJSON(t *testing.T) {
	internal := errors.New("socket 10111: secret internal state")
	e := &Error{Status: 503, Type: TypePoolFull, Msg: "all 5 UDP ports are leased",
		Extensions: map[string]any{"total": 5, "leased": 5, "limit": "udp-ports"}, Err: internal}
	e.WithHeader("Retry-After", "5")
	w := httptest.NewRecorder()
	WriteProblem(w, httptest.NewRequest("POST", "/whip/studio", nil), e)
	if w.Code != 503 || w.Header().Get("Content-Type") != ProblemContentType || w.Header().Get("Retry-After") != "5" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	if strings.Contains(w.Body.String(), "secret") {
		t.Fatalf("internal detail leaked: %s", w.Body)
	}
	var p map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": TypePoolFull, "title": "Service Unavailable", "status": 503.0,
		"detail": "all 5 UDP ports are leased", "instance": "/whip/studio", "total": 5.0, "leased": 5.0, "limit": "udp-ports"}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("%s = %v, want %v", k, p[k], v)
		}
	}
	if !errors.Is(e, internal) || !strings.Contains(e.Error(), "secret") {
		t.Errorf("the logged form must keep the cause: %v", e)
	}
	// HEAD answers carry no body.
	w = httptest.NewRecorder()
	WriteProblem(w, httptest.NewRequest(http.MethodHead, "/x", nil), Errorf(404, "nope"))
	if w.Body.Len() != 0 {
		t.Errorf("HEAD problem has a body")
	}
}
