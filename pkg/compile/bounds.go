package compile

import (
	"fmt"

	"github.com/pipelineinpod/pipelineinpod/pkg/resolve"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
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
