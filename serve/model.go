package serve

import "protoherb/infer"

// Aliases kept while callers move to package infer.
type (
	Embedder      = infer.Embedder
	ModelSpec     = infer.ModelSpec
	ModelEmbedder = infer.ModelEmbedder
)

// LoadModel is infer.LoadModel.
var LoadModel = infer.LoadModel

// NewModelEmbedder is infer.NewModelEmbedder.
var NewModelEmbedder = infer.NewModelEmbedder
