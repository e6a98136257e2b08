"""The PyTorch mirror of the nets bench_train.py times: the layer graph read from Caffe's
NetParameter as plain data, the same graph as a torch module, and the worker that times
its training step. Standard library only at import time: the worker runs in a separate,
benchmark-only environment with torch (and optionally threadpoolctl)."""
import json
import re
import time
from pathlib import Path

from benchmarks.machine_probe import describe_blas


def layer_graph(net_param):
    """The net as plain data (type, name, bottoms, tops, parameters) for the PyTorch
    worker; refuses a layer it has no PyTorch equivalent for."""
    graph = []
    for layer in net_param.layer:
        kind = layer.type
        entry = {"type": kind, "name": layer.name, "bottom": list(layer.bottom),
                 "top": list(layer.top)}
        if kind == "Input":
            entry["shapes"] = [list(shape.dim) for shape in layer.input_param.shape]
        elif kind == "Convolution":
            p = layer.convolution_param
            entry.update(num_output=p.num_output, kernel=p.kernel_size[0],
                         stride=p.stride[0] if p.stride else 1, pad=p.pad[0] if p.pad else 0,
                         group=p.group, bias=p.bias_term)
            if len(p.kernel_size) > 1 or p.dilation:
                raise ValueError(f"layer {layer.name}: non-square or dilated convolution")
        elif kind == "InnerProduct":
            p = layer.inner_product_param
            if p.axis != 1 or p.transpose:
                raise ValueError(f"layer {layer.name}: InnerProduct axis/transpose not supported")
            entry.update(num_output=p.num_output, bias=p.bias_term)
        elif kind == "Pooling":
            p = layer.pooling_param
            if p.pool != p.MAX or p.global_pooling:
                raise ValueError(f"layer {layer.name}: only max pooling is translated")
            entry.update(kernel=p.kernel_size, stride=p.stride, pad=p.pad)
        elif kind == "Power":
            p = layer.power_param
            entry.update(power=p.power, scale=p.scale, shift=p.shift)
        elif kind == "Concat":
            entry["axis"] = layer.concat_param.axis
        elif kind == "Slice":
            entry.update(axis=layer.slice_param.axis,
                         points=list(layer.slice_param.slice_point))
        elif kind == "Eltwise":
            p = layer.eltwise_param
            if p.operation != p.SUM or p.coeff:
                raise ValueError(f"layer {layer.name}: only a plain Eltwise SUM is translated")
        elif kind == "Reshape":
            entry["dims"] = list(layer.reshape_param.shape.dim)
        elif kind == "PReLU":
            entry["channel_shared"] = layer.prelu_param.channel_shared
        elif kind == "ReLU":
            if layer.relu_param.negative_slope:
                raise ValueError(f"layer {layer.name}: leaky ReLU is not translated")
        elif kind not in ("SoftmaxWithLoss", "Silence"):
            raise ValueError(f"layer {layer.name}: no PyTorch equivalent for Caffe's {kind}")
        graph.append(entry)
    return graph


def torch_model(torch, graph):
    nn, F = torch.nn, torch.nn.functional
    modules = nn.ModuleDict()
    for layer in graph:
        kind, name = layer["type"], layer["name"]
        if kind == "Convolution":
            modules[name] = nn.LazyConv2d(layer["num_output"], layer["kernel"], layer["stride"],
                                          layer["pad"], groups=layer["group"], bias=layer["bias"])
        elif kind == "InnerProduct":
            modules[name] = nn.LazyLinear(layer["num_output"], bias=layer["bias"])

    class Graph(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = modules

        def forward(self, data, label):
            blobs = {"data": data, "label": label}
            for layer in graph:
                kind, name = layer["type"], layer["name"]
                x = [blobs[b] for b in layer["bottom"]]
                if kind in ("Input", "Silence"):
                    continue
                if kind == "Convolution":
                    y = self.layers[name](x[0])
                elif kind == "InnerProduct":
                    y = self.layers[name](torch.flatten(x[0], 1))
                elif kind == "ReLU":
                    y = F.relu(x[0])
                elif kind == "PReLU":
                    if name not in self.prelu:  # Caffe's default slope 0.25
                        slopes = 1 if layer["channel_shared"] else x[0].shape[1]
                        self.prelu[name] = nn.Parameter(torch.full((slopes,), 0.25,
                                                                   device=x[0].device))
                    y = F.prelu(x[0], self.prelu[name])
                elif kind == "Pooling":
                    y = F.max_pool2d(x[0], layer["kernel"], layer["stride"], layer["pad"],
                                     ceil_mode=True)  # Caffe rounds the output size up
                elif kind == "Power":
                    y = x[0] * layer["scale"] + layer["shift"]
                    if layer["power"] != 1:
                        y = y ** layer["power"]
                elif kind == "Concat":
                    y = torch.cat(x, layer["axis"])
                elif kind == "Eltwise":
                    y = x[0]
                    for other in x[1:]:
                        y = y + other
                elif kind == "Reshape":
                    dims = [x[0].shape[i] if d == 0 else d for i, d in enumerate(layer["dims"])]
                    y = x[0].reshape(dims)
                elif kind == "Slice":
                    edges = [0, *layer["points"], x[0].shape[layer["axis"]]]
                    y = [x[0].narrow(layer["axis"], a, b - a) for a, b in zip(edges, edges[1:])]
                elif kind == "SoftmaxWithLoss":
                    y = F.cross_entropy(torch.flatten(x[0], 1), x[1].long())
                else:
                    raise ValueError(f"unknown layer type {kind}")
                for top, value in zip(layer["top"], y if isinstance(y, list) else [y]):
                    blobs[top] = value
            return y

    model = Graph()
    model.prelu = nn.ParameterDict()
    return model


def torch_worker(graph_file, warmup, iters, threads, gpu=None, math="fp32"):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device("cpu" if gpu is None else f"cuda:{gpu}")
    if gpu is not None:
        # fp32: strict float everywhere; tf32: cuDNN's and cuBLAS's TF32 tensor-core maths.
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = math == "tf32"
        torch.backends.cudnn.benchmark = True  # the fastest algorithm per shape, as cuDNN users run
    graph = json.loads(Path(graph_file).read_text())
    shapes = next(layer["shapes"] for layer in graph if layer["type"] == "Input")
    data = torch.rand(*shapes[0], device=device) * 255
    classes = next(layer["num_output"] for layer in reversed(graph)
                   if layer["type"] == "InnerProduct")
    label = torch.randint(0, classes, tuple(shapes[1]), device=device)
    model = torch_model(torch, graph).to(device).train()
    counted = []

    def count(module, inputs, output):
        counted.append(output.numel() * module.weight[0].numel())

    with torch.no_grad():
        model(data, label)  # sizes the lazy layers and the PReLU slopes
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight)
            module.register_forward_hook(count)
    times = []
    for i in range(warmup + iters):
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        model(data, label).backward()
        if gpu is not None:
            torch.cuda.synchronize(device)  # the GPU's work, not its queueing
        if i >= warmup:
            times.append(time.perf_counter() - start)
    per_iter = counted[:len(counted) // (warmup + iters)]
    flops = sum(2 * macs * (2 if i == 0 else 3) for i, macs in enumerate(per_iter))
    if gpu is not None:
        return {"times": times, "flops": flops, "build": f"torch {torch.__version__}",
                "blas": f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}",
                "convolution": f"cuDNN {torch.backends.cudnn.version()} ({math})"}
    config = torch.__config__.show()
    onednn = re.search(r"(?:oneDNN|MKL-DNN) v[0-9.]+", config)
    blas = (f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}, convolutions on "
            f"{onednn.group(0).replace('MKL-DNN', 'oneDNN') if onednn else 'oneDNN (version ?)'}, "
            f"GEMM on {'MKL' if 'BLAS_INFO=mkl' in config else 'its BLAS'}")
    try:
        import threadpoolctl
        blas += "; also loaded: " + describe_blas(threadpoolctl.threadpool_info())
    except ImportError:
        pass
    convolution = (onednn.group(0).replace("MKL-DNN", "oneDNN") if onednn else "oneDNN") + \
        f" ({torch.backends.cpu.get_cpu_capability()})"
    return {"times": times, "flops": flops, "blas": blas, "convolution": convolution,
            "build": f"torch {torch.__version__}"}
