//! A field of an answer read as `T` when it is one and as nothing usable otherwise (a dimension
//! that is not text, a list where an object belongs; in an object, a key given twice keeps its
//! first value), so one odd field never fails a whole answer. Read as the answer streams by: serde's untagged enums would copy every field into a
//! tree first, which was a third of a Cloud Eye run's CPU.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{
    BorrowedStrDeserializer, Error as ValueError, MapAccessDeserializer, SeqAccessDeserializer,
};
use serde::de::MapAccess;
use serde::de::{Deserialize, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer};
use serde::de::{SeqAccess, Visitor};

/// `T`, or a value of another shape (skipped).
pub(super) enum Loose<T> {
    Is(T),
    Other,
}

impl<T> Loose<T> {
    pub(super) fn get(self) -> Option<T> {
        match self {
            Loose::Is(t) => Some(t),
            Loose::Other => None,
        }
    }
}

/// `Option<Loose<T>>` as a `T`, if it is one.
pub(super) fn loose<T>(v: Option<Loose<T>>) -> Option<T> {
    v.and_then(Loose::get)
}

/// The JSON a type is read from: a value of any other shape is skipped without asking it.
#[derive(PartialEq, Eq)]
pub(super) enum Shape {
    Scalar,
    List,
    Object,
}

/// What [`Shape`] `Self` is read from.
pub(super) trait Shaped {
    const SHAPE: Shape;
}

impl Shaped for String {
    const SHAPE: Shape = Shape::Scalar;
}
impl Shaped for i64 {
    const SHAPE: Shape = Shape::Scalar;
}
impl Shaped for u64 {
    const SHAPE: Shape = Shape::Scalar;
}
impl<T> Shaped for Vec<T> {
    const SHAPE: Shape = Shape::List;
}

impl<'de, T: Deserialize<'de> + Shaped> Deserialize<'de> for Loose<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor(PhantomData))
    }
}

struct LooseVisitor<T>(PhantomData<T>);

/// A scalar read as `T`: its own error only says it is not one.
fn scalar<'de, T, D>(d: D) -> Loose<T>
where
    T: Deserialize<'de> + Shaped,
    D: Deserializer<'de, Error = ValueError>,
{
    if T::SHAPE != Shape::Scalar {
        return Loose::Other;
    }
    T::deserialize(d).map_or(Loose::Other, Loose::Is)
}

impl<'de, T: Deserialize<'de> + Shaped> Visitor<'de> for LooseVisitor<T> {
    type Value = Loose<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(scalar(v.into_deserializer()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(scalar(v.into_deserializer()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(scalar(v.into_deserializer()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(scalar(v.into_deserializer()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(scalar(v.into_deserializer()))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(scalar(BorrowedStrDeserializer::new(v)))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(scalar(v.into_deserializer()))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if T::SHAPE == Shape::List {
            return T::deserialize(SeqAccessDeserializer::new(seq)).map(Loose::Is);
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if T::SHAPE == Shape::Object {
            return T::deserialize(MapAccessDeserializer::new(map)).map(Loose::Is);
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }
}

/// A key of an object, as the index of the field it names among `fields` (none: not one).
pub(super) struct Key(pub &'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|n| *n == v))
    }
}

/// A struct whose every field is an `Option<Loose<_>>`, read from an object as it streams by:
/// keys it does not name are skipped and a key given twice keeps its first value (serde's
/// derive would fail the whole answer on it).
macro_rules! lenient {
    (struct $name:ident { $($field:ident: $ty:ty,)* }) => {
        struct $name {
            $($field: Option<Loose<$ty>>,)*
        }

        impl Shaped for $name {
            const SHAPE: Shape = Shape::Object;
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Fields;
                impl<'de> serde::de::Visitor<'de> for Fields {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$name, A::Error> {
                        const NAMES: &[&str] = &[$(stringify!($field)),*];
                        let mut v = $name { $($field: None,)* };
                        while let Some(key) = map.next_key_seed(Key(NAMES))? {
                            let name = key.map_or("", |i| NAMES[i]);
                            match name {
                                $(stringify!($field) if v.$field.is_none() => {
                                    v.$field = map.next_value()?;
                                })*
                                _ => {
                                    map.next_value::<serde::de::IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(v)
                    }
                }
                d.deserialize_map(Fields)
            }
        }
    };
}
pub(super) use lenient;
