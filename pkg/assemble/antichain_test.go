package assemble

import (
	"math/rand"
	"testing"
)

// The flow method agrees with trying every subset, on random DAGs of up to 12 nodes
// (densities from none to nearly total orders, zero weights included), and the set it
// returns is an antichain of the weight it claims.
func TestMaxWeightAntichainAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for range 3000 {
		n := 1 + rng.Intn(12)
		density := rng.Float64()
		var edges [][2]int
		for u := range n {
			for v := u + 1; v < n; v++ {
				if rng.Float64() < density*density {
					edges = append(edges, [2]int{u, v})
				}
			}
		}
		// Nodes in a random order, so edges do not always go from low to high indices.
		perm := rng.Perm(n)
		for i := range edges {
			edges[i] = [2]int{perm[edges[i][0]], perm[edges[i][1]]}
		}
		w := make([]int64, n)
		for i := range w {
			if rng.Intn(5) > 0 {
				w[i] = rng.Int63n(2000)
			}
		}
		reach := closure(n, edges)
		want := int64(0)
		for mask := range 1 << n {
			if sum, ok := antichainWeight(mask, n, reach, w); ok && sum > want {
				want = sum
			}
		}
		got, set := maxWeightAntichain(n, edges, w)
		if got != want {
			t.Fatalf("n=%d edges=%v w=%v: got %d, brute force %d", n, edges, w, got, want)
		}
		mask := 0
		for _, v := range set {
			mask |= 1 << v
		}
		if sum, ok := antichainWeight(mask, n, reach, w); !ok || sum != got {
			t.Fatalf("n=%d edges=%v w=%v: set %v is antichain=%v of weight %d, want an antichain of %d", n, edges, w, set, ok, sum, got)
		}
	}
}

func closure(n int, edges [][2]int) [][]bool {
	r := make([][]bool, n)
	for i := range r {
		r[i] = make([]bool, n)
	}
	for _, e := range edges {
		r[e[0]][e[1]] = true
	}
	for k := range n {
		for i := range n {
			for j := range n {
				if r[i][k] && r[k][j] {
					r[i][j] = true
				}
			}
		}
	}
	return r
}

func antichainWeight(mask, n int, reach [][]bool, w []int64) (int64, bool) {
	var sum int64
	for i := range n {
		if mask&(1<<i) == 0 {
			continue
		}
		sum += w[i]
		for j := range n {
			if mask&(1<<j) != 0 && reach[i][j] {
				return 0, false
			}
		}
	}
	return sum, true
}

// A 300-task pipeline in layers of 30, each task after the whole layer before it, with
// 30 finally tasks after all: well within a reconcile's budget.
func BenchmarkMaxWeightAntichainLayered(b *testing.B) {
	const layers, width = 10, 30
	n := layers*width + width
	var edges [][2]int
	for l := 1; l < layers; l++ {
		for i := range width {
			for j := range width {
				edges = append(edges, [2]int{(l-1)*width + j, l*width + i})
			}
		}
	}
	for f := layers * width; f < n; f++ {
		for v := range layers * width {
			edges = append(edges, [2]int{v, f})
		}
	}
	w := make([]int64, n)
	for i := range w {
		w[i] = int64(100 + i%7*250)
	}
	b.ResetTimer()
	for range b.N {
		maxWeightAntichain(n, edges, w)
	}
}
