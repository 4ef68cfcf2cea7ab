//! A [`Graph`] as an ONNX model file.
//!
//! The messages below are the part of ONNX's `onnx.proto` (IR version 8,
//! <https://github.com/onnx/onnx/blob/main/onnx/onnx.proto>, Apache-2.0)
//! that a layer stack needs, with the field numbers of that file; prost
//! encodes them. (The `onnx-protobuf` crate ships without its generated
//! code, and rust-protobuf 3's generated code names `::protobuf`, which is
//! protobuf 2 here, for TensorBoard.)

use prost::Message;

use super::graph::{Attr, Graph, INPUT, OUTPUT};

/// ONNX IR version 8 (ONNX 1.10+), read by every onnxruntime since 1.10.
const IR_VERSION: i64 = 8;
/// Operator set 13: Softmax over one axis, and every operator used here.
pub const OPSET: i64 = 13;

const FLOAT: i32 = 1;
const ATTR_FLOAT: i32 = 1;
const ATTR_INT: i32 = 2;
const ATTR_INTS: i32 = 7;

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(string, tag = "3")]
    producer_version: String,
    #[prost(string, tag = "6")]
    doc_string: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int32, tag = "20")]
    r#type: i32,
    #[prost(float, tag = "2")]
    f: f32,
    #[prost(int64, tag = "3")]
    i: i64,
    #[prost(int64, repeated, tag = "8")]
    ints: Vec<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(string, tag = "8")]
    name: String,
    /// Little-endian float32 values.
    #[prost(bytes = "vec", tag = "9")]
    raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    /// `oneof value { Tensor tensor_type = 1; ... }`; only tensors here.
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

/// `oneof value { int64 dim_value = 1; string dim_param = 2; }`.
#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

fn tensor_value(name: &str, dims: &[Dimension]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim: dims.to_vec() }),
            }),
        }),
    }
}

fn fixed(n: i64) -> Dimension {
    Dimension {
        dim_value: Some(n),
        dim_param: None,
    }
}

fn batch() -> Dimension {
    Dimension {
        dim_value: None,
        dim_param: Some("batch".into()),
    }
}

fn attribute(name: &str, value: &Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_string(),
        ..AttributeProto::default()
    };
    match value {
        Attr::Int(i) => {
            a.r#type = ATTR_INT;
            a.i = *i;
        }
        Attr::Ints(v) => {
            a.r#type = ATTR_INTS;
            a.ints = v.clone();
        }
        Attr::Float(f) => {
            a.r#type = ATTR_FLOAT;
            a.f = *f;
        }
    }
    a
}

/// The model file's bytes: `graph` with `metadata` as its metadata_props.
pub fn encode(graph: &Graph, metadata: &[(String, String)]) -> Vec<u8> {
    let [c, h, w] = graph.input_chw;
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "runner".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: "An image classifier trained by runner; see metadata_props for the input."
            .into(),
        graph: Some(GraphProto {
            node: graph
                .nodes
                .iter()
                .map(|n| NodeProto {
                    input: n.inputs.clone(),
                    output: n.outputs.clone(),
                    name: n.name.clone(),
                    op_type: n.op.to_string(),
                    attribute: n.attrs.iter().map(|(k, v)| attribute(k, v)).collect(),
                })
                .collect(),
            name: "runner".into(),
            initializer: graph
                .initializers
                .iter()
                .map(|t| TensorProto {
                    dims: t.dims.clone(),
                    data_type: FLOAT,
                    name: t.name.clone(),
                    raw_data: t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                })
                .collect(),
            input: vec![tensor_value(
                INPUT,
                &[batch(), fixed(c), fixed(h), fixed(w)],
            )],
            output: vec![tensor_value(OUTPUT, &[batch(), fixed(graph.classes)])],
        }),
        metadata_props: metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    };
    model.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::graph::{Initializer, Node};

    #[test]
    fn the_encoding_reads_back_with_the_onnx_field_numbers() {
        let graph = Graph {
            nodes: vec![Node {
                op: "Relu",
                name: "r".into(),
                inputs: vec![INPUT.into()],
                outputs: vec![OUTPUT.into()],
                attrs: vec![("alpha", Attr::Float(0.5))],
            }],
            initializers: vec![Initializer {
                name: "w".into(),
                dims: vec![2],
                values: vec![1.0, -2.0],
            }],
            input_chw: [1, 2, 2],
            classes: 4,
        };
        let bytes = encode(&graph, &[("classes".into(), "a,b".into())]);
        let back = ModelProto::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(back.ir_version, IR_VERSION);
        assert_eq!(back.opset_import[0].version, OPSET);
        let g = back.graph.expect("graph");
        assert_eq!(g.node[0].op_type, "Relu");
        assert_eq!(g.node[0].attribute[0].f, 0.5);
        assert_eq!(g.initializer[0].raw_data.len(), 8);
        assert_eq!(back.metadata_props[0].value, "a,b");
        // Field 7 (graph) starts with tag byte (7 << 3) | 2 somewhere, and
        // ir_version is field 1 as a varint: the first byte is 0x08.
        assert_eq!(bytes[0], 0x08);
    }
}
