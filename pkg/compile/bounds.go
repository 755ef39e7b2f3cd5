package compile

import (
	"fmt"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/pipelineinpod/pipelineinpod/pkg/resolve"
)

// fits refuses a matrix whose fan-out would take the run over resolve.MaxTasks. Resolve
// counts a matrix as written; only here, after the run's params are substituted, is
// the number of its instances known (a run param may carry an array of any length),
// and it is checked before a single instance is made.
func (c *Compiled) fits(field string, pt v1.PipelineTask) error {
	n := pt.Matrix.CountCombinations()
	if n > resolve.MaxTasks-len(c.Tasks) {
		return fmt.Errorf("%s.matrix: %d combinations on top of %d tasks make more than the %d tasks one pod runs; split the Pipeline or shorten the matrix", field, n, len(c.Tasks), resolve.MaxTasks)
	}
	return nil
}

// MaxExpandedBytes, Expansion and ExpansionFits are resolve's: resolve substitutes
// params into resolver params before compile substitutes them into the rest.
const MaxExpandedBytes = resolve.MaxExpandedBytes

// Expansion is resolve.Expansion.
func Expansion(spec any, params v1.Params, defaults v1.ParamSpecs) (int, error) {
	return resolve.Expansion(spec, params, defaults)
}

// ExpansionFits is resolve.ExpansionFits.
func ExpansionFits(field string, spec any, params v1.Params, defaults v1.ParamSpecs) error {
	return resolve.ExpansionFits(field, spec, params, defaults)
}
