//go:build tools

// Package tools pins the etcd server the cluster harness builds.
package tools

import _ "go.etcd.io/etcd/server/v3"
