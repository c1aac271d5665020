//go:build tools

// This file keeps the swag command (make openapi) in go.mod and go.sum, so
// `go run github.com/swaggo/swag/cmd/swag` works offline at the pinned
// version and `go mod tidy` does not drop it.
package main

import _ "github.com/swaggo/swag/cmd/swag"
