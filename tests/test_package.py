"""The public API: every exported name resolves, and the TensorFlow-free parts stay free of it."""

import subprocess
import sys

import ssl_multilabel


def test_every_public_name_resolves_to_its_module():
    for name in ssl_multilabel.__all__:
        value = getattr(ssl_multilabel, name)
        if name != "__version__":
            module = ssl_multilabel._EXPORTS[name]
            assert getattr(value, "__module__", "").startswith(f"ssl_multilabel.{module}") or not callable(value), name


def test_unknown_name_is_an_attribute_error():
    try:
        ssl_multilabel.no_such_name
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_labels_and_propagation_do_not_import_tensorflow():
    code = (
        "import sys, ssl_multilabel as s; s.PartialLabels; s.knn_graph; s.KNNLabelPropagation; "
        "s.random_cells; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
