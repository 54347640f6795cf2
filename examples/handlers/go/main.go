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
	"sync"
	"syscall"
	"time"
)

var (
	seenMu sync.Mutex
	seen   = map[string]bool{}
)

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func send(w http.ResponseWriter, status int, body []byte, ctype string) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func publish(doc any) (string, error) {
	body, err := json.Marshal(doc)
	if err != nil {
		return "", err
	}
	url := env("INTENT_SIDECAR_URL", "http://127.0.0.1:8787") + "/v1/publish"
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return "", fmt.Errorf("publish failed: %d", resp.StatusCode)
	}
	var receipt struct {
		ID string `json:"id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&receipt)
	return receipt.ID, err
}

func handle(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("Intent-Id")
	attempt, _ := strconv.Atoi(r.Header.Get("Intent-Attempt"))
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		send(w, 400, []byte("cannot read body\n"), "text/plain")
		return
	}
	payload := map[string]any{}
	if len(bytes.TrimSpace(raw)) > 0 {
		var anyValue any
		if err := json.Unmarshal(raw, &anyValue); err != nil {
			send(w, 400, []byte("payload is not valid JSON: "+err.Error()+"\n"), "text/plain")
			return
		}
		if m, ok := anyValue.(map[string]any); ok {
			payload = m
		}
	}
	log.Printf("go handler: intent %s attempt %d", id, attempt)
	if b, _ := payload["busy_first"].(bool); b {
		seenMu.Lock()
		first := !seen[id]
		seen[id] = true
		seenMu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			send(w, 503, []byte("busy, try again\n"), "text/plain")
			return
		}
	}
	if s, ok := payload["sleep"].(float64); ok && s > 0 {
		time.Sleep(time.Duration(s * float64(time.Second)))
	}
	if v, ok := payload["fail"]; ok {
		send(w, 500, []byte(fmt.Sprint(v)), "text/plain")
		return
	}
	if v, ok := payload["reject"]; ok {
		send(w, 422, []byte(fmt.Sprint(v)), "text/plain")
		return
	}
	name := "world"
	if n, ok := payload["name"]; ok {
		name = fmt.Sprint(n)
	}
	if t, _ := payload["text"].(bool); t {
		send(w, 200, []byte("Hello, "+name+"!"), "text/plain; charset=utf-8")
		return
	}
	result := map[string]any{"greeting": "Hello, " + name + "!", "lang": "go", "attempt": attempt}
	if doc, ok := payload["publish"].(map[string]any); ok {
		pid, err := publish(doc)
		if err != nil {
			send(w, 500, []byte(err.Error()), "text/plain")
			return
		}
		result["published"] = pid
	}
	body, _ := json.Marshal(result)
	send(w, 200, body, "application/json")
}

func main() {
	log.SetFlags(0)
	addr := env("HOST", "127.0.0.1") + ":" + env("PORT", "8080")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		send(w, 200, []byte("ok\n"), "text/plain")
	})
	mux.HandleFunc("POST /", handle)
	server := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	// SIGTERM: stop accepting, let in-flight requests finish, then exit 0.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	log.Printf("go handler listening on %s", addr)
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
