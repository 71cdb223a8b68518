import domain_moe.graph as graph


def test_public_names():
    assert {"Mowst", "GNN", "NodeMLP", "ConfidenceGate", "dispersion", "check_graph"} <= set(graph.__all__)
