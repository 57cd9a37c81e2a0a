"""TF-Hub's side of the modules: the local hub server (`server`, `inception-hub serve-hub`) and
tensorflow_hub's own cache filled with them (`cache`, `inception-hub install-hub-cache`)."""
