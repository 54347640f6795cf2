// An intent-fleet handler in Go (standard library only).
// The sidecar POSTs each intent's payload here; see ../README.md for the contract
// and the payload knobs every example handler shares.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	lang    = "go"
	text    = "text/plain; charset=utf-8"
	seenMax = 10000 // busy_first: remember this many intent ids, oldest forgotten first
)

// reply is what to say about one intent.
type reply struct {
	status  int
	ctype   string
	body    []byte
	headers map[string]string
}

func textReply(status int, body string) reply {
	return reply{status: status, ctype: text, body: []byte(body)}
}

// seenIDs remembers which intents were already answered 503 once (bounded, FIFO).
type seenIDs struct {
	mu    sync.Mutex
	ids   map[string]bool
	order []string
}

func (s *seenIDs) firstSighting(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids[id] {
		return false
	}
	s.ids[id] = true
	s.order = append(s.order, id)
	if len(s.order) > seenMax {
		delete(s.ids, s.order[0])
		s.order = s.order[1:]
	}
	return true
}

var seen = &seenIDs{ids: map[string]bool{}}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// publish sends a follow-up intent through the sidecar's local API (no key needed).
func publish(doc any) (string, error) {
	body, err := json.Marshal(doc)
	if err != nil {
		return "", err
	}
	base := strings.TrimRight(env("INTENT_SIDECAR_URL", "http://127.0.0.1:8787"), "/")
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Post(base+"/v1/publish", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg)
	}
	var receipt struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&receipt); err != nil {
		return "", err
	}
	return receipt.ID, nil
}

// answer holds all of the example's behaviour.
func answer(payload map[string]any, id string, attempt int) reply {
	if b, _ := payload["busy_first"].(bool); b && seen.firstSighting(id) {
		r := textReply(503, "busy, try again\n")
		r.headers = map[string]string{"Retry-After": "1"}
		return r
	}
	if s, ok := payload["sleep"].(float64); ok && s > 0 {
		time.Sleep(time.Duration(s * float64(time.Second)))
	}
	if v, ok := payload["fail"]; ok {
		return textReply(500, fmt.Sprint(v))
	}
	if v, ok := payload["reject"]; ok {
		return textReply(422, fmt.Sprint(v))
	}
	name := "world"
	if n, ok := payload["name"]; ok {
		name = fmt.Sprint(n)
	}
	if t, _ := payload["text"].(bool); t {
		return textReply(200, "Hello, "+name+"!")
	}
	result := map[string]any{"greeting": "Hello, " + name + "!", "lang": lang, "attempt": attempt}
	if doc, ok := payload["publish"]; ok {
		pid, err := publish(doc)
		if err != nil {
			return textReply(502, "publish through the sidecar failed: "+err.Error())
		}
		result["published"] = pid
	}
	body, _ := json.Marshal(result)
	return reply{status: 200, ctype: "application/json", body: body}
}

func readAndAnswer(r *http.Request, id string, attempt int) reply {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return textReply(400, "cannot read the request body: "+err.Error()+"\n")
	}
	payload := map[string]any{}
	if len(bytes.TrimSpace(raw)) > 0 {
		var value any
		if err := json.Unmarshal(raw, &value); err != nil {
			return textReply(400, "payload is not valid JSON: "+err.Error()+"\n")
		}
		if m, ok := value.(map[string]any); ok {
			payload = m
		}
	}
	return answer(payload, id, attempt)
}

func send(w http.ResponseWriter, r reply) {
	for k, v := range r.headers {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", r.ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(r.body)))
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body)
}

func handle(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	id := r.Header.Get("Intent-Id")
	if id == "" {
		id = "-"
	}
	attempt, err := strconv.Atoi(r.Header.Get("Intent-Attempt"))
	if err != nil || attempt < 0 {
		attempt = 0
	}
	rep := readAndAnswer(r, id, attempt)
	log.Printf("%s handler: intent %s attempt %d -> %d (%d ms)",
		lang, id, attempt, rep.status, time.Since(started).Milliseconds())
	send(w, rep)
}

func main() {
	log.SetFlags(0)
	addr := env("HOST", "127.0.0.1") + ":" + env("PORT", "8080")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		send(w, textReply(200, "ok\n"))
	})
	mux.HandleFunc("POST /", handle)
	server := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	// SIGTERM (and Ctrl-C): stop accepting, close idle connections, let in-flight
	// requests finish, then exit 0. ListenAndServe returns as soon as Shutdown starts,
	// so main waits for Shutdown itself to finish.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := server.Shutdown(shutdown); err != nil {
			log.Printf("%s handler: shutdown: %v", lang, err)
		}
	}()
	log.Printf("%s handler listening on %s", lang, addr)
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-drained
	log.Printf("%s handler stopped", lang)
}
