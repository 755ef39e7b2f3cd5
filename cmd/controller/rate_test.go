package main

import (
	"testing"

	"k8s.io/client-go/rest"
)

// The client's rate is sized as Tekton's controller sizes its own: twice client-go's
// default QPS and its default burst unless -kube-api-qps/-kube-api-burst say otherwise,
// times its two controllers.
func TestSizeClientRate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		qps       float32
		burst     int
		wantQPS   float32
		wantBurst int
	}{
		// Tekton's 20 QPS and burst 20.
		{name: "defaults", wantQPS: 4 * rest.DefaultQPS, wantBurst: 2 * rest.DefaultBurst},
		{name: "flags", qps: 50, burst: 100, wantQPS: 100, wantBurst: 200},
		{name: "only a QPS", qps: 30, wantQPS: 60, wantBurst: 2 * rest.DefaultBurst},
	} {
		cfg := &rest.Config{QPS: tc.qps, Burst: tc.burst}
		sizeClientRate(cfg)
		if cfg.QPS != tc.wantQPS || cfg.Burst != tc.wantBurst {
			t.Errorf("%s: QPS %v burst %d, want %v and %d", tc.name, cfg.QPS, cfg.Burst, tc.wantQPS, tc.wantBurst)
		}
	}
}
