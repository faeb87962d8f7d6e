"""LiteRT (TensorFlow Lite) flatbuffer exports of a pruned model, measured on the interpreter."""
