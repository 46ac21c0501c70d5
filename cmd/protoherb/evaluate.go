package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"protoherb/dataset"
	"protoherb/eval"
)

func newEvaluateCmd() *cobra.Command {
	var (
		in                 eval.Inputs
		data, report       string
		tailMax, mediumMax int
		topGenera          int
	)
	cmd := &cobra.Command{
		Use:   "evaluate --pred submission.csv --truth truth.csv [--topk-file topk.csv] [--train-counts classes.csv | --data PATH] [--report DIR]",
		Short: "Score a submission: macro-F1 as scikit-learn, accuracy, top-5, head/medium/tail, genus-level errors",
		Long: `Score a submission (Id,Predicted) against the solution (same header) with macro-F1 exactly as
scikit-learn's f1_score(average="macro"), accuracy and, with --topk-file (Id,Rank,Predicted,Distance), top-5
accuracy. With class information (--train-counts FILE with header class_id,name,genus,family,train_count,
or --data PATH to count the training split of a dataset) every label must be a known class, and the report
adds head/medium/tail groups, F1 by class frequency and genus/family-level errors. --report DIR writes
summary.md, summary.json, per_class.csv and PNG plots; nothing is written when an input is bad.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opt := eval.Options{TailMax: tailMax, MediumMax: mediumMax, TopGenera: topGenera}
			if data != "" {
				if in.Classes != "" {
					return fmt.Errorf("--data and --train-counts both give the classes; use one")
				}
				d, err := dataset.Open(data, dataset.Options{Split: "train"})
				if err != nil {
					return err
				}
				if opt.Classes, err = eval.ClassesFromDataset(d); err != nil {
					return err
				}
				opt.ClassesName = data + " (train split)"
			}
			r, err := eval.EvaluateFiles(in, opt)
			if err != nil {
				return err
			}
			if r.NoPred > 0 || r.NoTrue > 0 {
				slog.Warn("precision or recall ill-defined, set to 0 as scikit-learn does",
					"labels_never_predicted", r.NoPred, "labels_never_true", r.NoTrue)
			}
			if report != "" {
				if err := r.WriteDir(report); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "images: %d, labels: %d\n", r.Images, r.Labels)
			fmt.Fprintf(out, "accuracy: %.6f\n", r.Accuracy)
			if r.TopK > 0 {
				fmt.Fprintf(out, "top-%d accuracy: %.6f\n", r.TopK, r.TopKAccuracy)
			}
			for _, g := range r.Groups {
				fmt.Fprintf(out, "%s (%s train images): macro-F1 %.6f over %d classes\n", g.Name, g.Range(), g.MacroF1, g.Labels)
			}
			if report != "" {
				fmt.Fprintf(out, "report: %s\n", report)
			}
			fmt.Fprintf(out, "macro-F1: %.6f\n", r.MacroF1)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.Pred, "pred", "", "submission CSV (Id,Predicted)")
	f.StringVar(&in.Truth, "truth", "", "solution CSV (Id,Predicted)")
	f.StringVar(&in.TopK, "topk-file", "", "top-k CSV written by predict --topk-out (Id,Rank,Predicted,Distance); --topk is a count on every command")
	f.StringVar(&in.Classes, "train-counts", "", "class CSV: class_id,train_count required; name,genus,family optional")
	f.StringVar(&data, "data", "", "dataset whose train split gives the classes, taxonomy and training counts")
	f.StringVar(&report, "report", "", "directory for summary.md, summary.json, per_class.csv and plots")
	f.IntVar(&tailMax, "tail-max", eval.DefaultTailMax, "tail classes have at most this many training images")
	f.IntVar(&mediumMax, "medium-max", eval.DefaultMediumMax, "medium classes have at most this many; head classes more")
	f.IntVar(&topGenera, "top-genera", eval.DefaultTopGenera, "genera in the confusion heat map")
	cmd.MarkFlagRequired("pred")
	cmd.MarkFlagRequired("truth")
	return cmd
}
