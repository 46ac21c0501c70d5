package main

import (
	"github.com/spf13/cobra"

	"protoherb/train"
)

func newPretrainCmd() *cobra.Command {
	return newRunCmd(train.ModePretrain, &cobra.Command{
		Use:   "pretrain --data PATH --run-dir DIR [flags] | --resume DIR",
		Short: "Softmax pretraining of a backbone on the most populated classes (start train --init from it)",
		Long: `Trains a backbone and a classifier head with softmax cross-entropy (label smoothing) on the
--top-classes most populated classes (0: all), with class-balanced or plain batches, SGD (Nesterov)
or AdamW, a cosine schedule with linear warm-up, weight decay and augmentation. Validation is top-1
accuracy on a stratified --val-frac of the images (at most 5,000). The checkpoints' backbone is what
"protoherb train --init RUN_DIR" starts from.

Every option can come from --config run.yaml (keys are the flag names); flags given on the command
line win. --resume RUN_DIR continues exactly; Ctrl-C (SIGTERM) saves a checkpoint and exits 130 (143).`,
	})
}
