/**
 * One definition of a table's columns gives both its TypeScript shape and its Arrow schema.
 *
 * Tables are built and read column-wise from typed arrays (no per-row objects), because trajectory
 * batches hold millions of latent values. Tensor columns are fixed-size lists of float32 whose shape
 * is kept in the field metadata under the `arrow.fixed_shape_tensor` extension convention, so
 * pyarrow and DuckDB see a list of the right width and readers can restore the shape.
 */
import * as arrow from "apache-arrow"

export type ColumnKind = "int32" | "float64" | "utf8" | "tensor"

export interface ColumnSpec<K extends ColumnKind = ColumnKind, N extends boolean = boolean> {
  readonly kind: K
  readonly nullable: N
  /** What the column holds, with units; shown by `etaflow inspect`. */
  readonly doc: string
}

/** `Column.float64(doc)` is required; `Column.float64(doc, true)` may hold nulls. */
interface ColumnMaker<K extends ColumnKind> {
  (doc: string): ColumnSpec<K, false>
  (doc: string, nullable: true): ColumnSpec<K, true>
}

const maker = <K extends ColumnKind>(kind: K): ColumnMaker<K> =>
  ((doc: string, nullable?: boolean) => ({ kind, nullable: nullable ?? false, doc })) as ColumnMaker<K>

export const Column = {
  int32: maker("int32"),
  float64: maker("float64"),
  utf8: maker("utf8"),
  /** A float32 tensor per row; its shape is given when a table is built (it depends on the data set). */
  tensor: maker("tensor")
}

export type ColumnsSpec = Readonly<Record<string, ColumnSpec>>

/** A numeric column where some rows are null: `valid[i] = 1` marks a present value. */
export interface Masked<A> {
  readonly values: A
  readonly valid: Uint8Array
}

type Base<K extends ColumnKind> = K extends "int32" ? Int32Array
  : K extends "float64" ? Float64Array
  : K extends "utf8" ? ReadonlyArray<string | null>
  : Float32Array

/** The column-wise value of one column: nullable columns may be all-null (`null`) or masked. */
export type ColumnValue<C extends ColumnSpec> = C extends ColumnSpec<infer K, infer N>
  ? N extends true ? (K extends "utf8" ? Base<K> : Base<K> | Masked<Base<K>>) | null : Base<K>
  : never

/** A whole table, column-wise. Tensor columns are flat float32 (row-major, `rows × prod(shape)`). */
export type ColumnsOf<S extends ColumnsSpec> = { readonly [K in keyof S]: ColumnValue<S[K]> }

export type TensorShapes<S extends ColumnsSpec> = {
  readonly [K in keyof S as S[K]["kind"] extends "tensor" ? K : never]: ReadonlyArray<number>
}

export class TableDef<const S extends ColumnsSpec> {
  constructor(
    /** Name used in error messages and in the `etaflow.table` schema metadata. */
    readonly name: string,
    /** Bumped when a column changes meaning; written into every file. */
    readonly version: number,
    readonly columns: S
  ) {}

  /** The Arrow schema of this table for the given tensor shapes. */
  schema(shapes: TensorShapes<S>): arrow.Schema {
    const fields = Object.entries(this.columns).map(([name, spec]) => {
      switch (spec.kind) {
        case "int32":
          return new arrow.Field(name, new arrow.Int32(), spec.nullable)
        case "float64":
          return new arrow.Field(name, new arrow.Float64(), spec.nullable)
        case "utf8":
          return new arrow.Field(name, new arrow.Utf8(), spec.nullable)
        case "tensor": {
          const shape = (shapes as Record<string, ReadonlyArray<number>>)[name]
          if (shape === undefined) throw new Error(`table ${this.name}: no shape given for tensor column "${name}"`)
          return tensorField(name, shape, spec.nullable)
        }
      }
    })
    return new arrow.Schema(
      fields,
      new Map([["etaflow.table", this.name], ["etaflow.table_version", String(this.version)]])
    )
  }

  /** Builds an Arrow table from columns; checks every column's length against `rows`. */
  build(rows: number, columns: ColumnsOf<S>, shapes: TensorShapes<S>): arrow.Table {
    const schema = this.schema(shapes)
    const children = schema.fields.map((field) => {
      const value = (columns as Record<string, unknown>)[field.name]
      if (value === undefined) throw new Error(`table ${this.name}: column "${field.name}" is missing`)
      return columnData(this.name, field, rows, value)
    })
    const data = arrow.makeData({ type: new arrow.Struct(schema.fields), length: rows, nullCount: 0, children })
    return new arrow.Table([new arrow.RecordBatch(schema, data)])
  }

  /** Reads the columns of `table` back into typed arrays; fails naming the column that does not fit. */
  read(table: arrow.Table, source: string): { rows: number; columns: ColumnsOf<S>; shapes: TensorShapes<S> } {
    const columns: Record<string, unknown> = {}
    const shapes: Record<string, ReadonlyArray<number>> = {}
    for (const [name, spec] of Object.entries(this.columns)) {
      const field = table.schema.fields.find((f) => f.name === name)
      if (field === undefined) throw new Error(`${source}: table ${this.name} needs column "${name}", which is missing`)
      if (spec.kind === "tensor") shapes[name] = shapeOf(field, source)
      columns[name] = readColumn(table, field, spec, source)
    }
    return { rows: table.numRows, columns: columns as ColumnsOf<S>, shapes: shapes as TensorShapes<S> }
  }
}

const tensorField = (name: string, shape: ReadonlyArray<number>, nullable: boolean) => {
  const width = shape.reduce((a, b) => a * b, 1)
  return new arrow.Field(
    name,
    new arrow.FixedSizeList(width, new arrow.Field("item", new arrow.Float32(), false)),
    nullable,
    new Map([
      ["ARROW:extension:name", "arrow.fixed_shape_tensor"],
      ["ARROW:extension:metadata", JSON.stringify({ shape })]
    ])
  )
}

/** The tensor shape of a fixed-size-list field, from its extension metadata or its width. */
export const shapeOf = (field: arrow.Field, source: string): ReadonlyArray<number> => {
  if (!arrow.DataType.isFixedSizeList(field.type)) {
    throw new Error(`${source}: column "${field.name}" should be a fixed-size list of float32, found ${field.type}`)
  }
  const meta = field.metadata.get("ARROW:extension:metadata")
  if (meta !== undefined) {
    const parsed = JSON.parse(meta) as { shape?: Array<number> }
    if (Array.isArray(parsed.shape)) return parsed.shape
  }
  return [field.type.listSize]
}

const packValidity = (valid: Uint8Array, rows: number): { bitmap: Uint8Array; nullCount: number } => {
  const bitmap = new Uint8Array(Math.ceil(rows / 8))
  let nullCount = 0
  for (let i = 0; i < rows; i++) {
    if (valid[i]) bitmap[i >> 3] |= 1 << (i & 7)
    else nullCount++
  }
  return { bitmap, nullCount }
}

const isMasked = (v: unknown): v is Masked<ArrayLike<number>> =>
  typeof v === "object" && v !== null && "valid" in v && "values" in v

const columnData = (table: string, field: arrow.Field, rows: number, value: unknown): arrow.Data => {
  const fail = (what: string) => {
    throw new Error(`table ${table}: column "${field.name}" ${what}`)
  }
  const type = field.type
  if (type instanceof arrow.Utf8) {
    const strings = value === null ? new Array<null>(rows).fill(null) : (value as ReadonlyArray<string | null>)
    if (strings.length !== rows) fail(`has ${strings.length} values, expected ${rows}`)
    return arrow.vectorFromArray(strings as Array<string | null>, new arrow.Utf8()).data[0]
  }
  const width = type instanceof arrow.FixedSizeList ? type.listSize : 1
  const Ctor = type instanceof arrow.Int32 ? Int32Array : type instanceof arrow.Float64 ? Float64Array : Float32Array
  let values: ArrayLike<number>
  let valid: Uint8Array | undefined
  if (value === null) {
    values = new Ctor(rows * width)
    valid = new Uint8Array(rows)
  } else if (isMasked(value)) {
    values = value.values
    valid = value.valid
  } else {
    values = value as ArrayLike<number>
  }
  if (!(values instanceof Ctor)) fail(`should be a ${Ctor.name}`)
  if (values.length !== rows * width) fail(`has ${values.length} values, expected ${rows} rows × ${width}`)
  if (valid !== undefined && valid.length !== rows) fail(`has a validity mask of ${valid.length}, expected ${rows}`)
  if (valid !== undefined && !field.nullable) fail("is not nullable but was given nulls")
  const { bitmap, nullCount } = valid === undefined ? { bitmap: undefined, nullCount: 0 } : packValidity(valid, rows)
  if (type instanceof arrow.FixedSizeList) {
    const child = arrow.makeData({
      type: new arrow.Float32(),
      length: rows * width,
      nullCount: 0,
      data: values as Float32Array
    })
    return arrow.makeData({ type, length: rows, nullCount, nullBitmap: bitmap, child })
  }
  if (type instanceof arrow.Int32) {
    return arrow.makeData({ type, length: rows, nullCount, nullBitmap: bitmap, data: values as Int32Array })
  }
  return arrow.makeData({
    type: type as arrow.Float64,
    length: rows,
    nullCount,
    nullBitmap: bitmap,
    data: values as Float64Array
  })
}

const readColumn = (table: arrow.Table, field: arrow.Field, spec: ColumnSpec, source: string): unknown => {
  const vector = table.getChild(field.name)!
  const rows = table.numRows
  const expect = (ok: boolean, what: string) => {
    if (!ok) throw new Error(`${source}: column "${field.name}" should be ${what}, found ${field.type}`)
  }
  const t = field.type
  // Types decoded from IPC are generic (Int_, Float), so compare type ids and widths, not classes.
  const isInt32 = (x: arrow.DataType) => arrow.DataType.isInt(x) && x.bitWidth === 32 && x.isSigned
  const isFloat = (x: arrow.DataType, p: arrow.Precision) => arrow.DataType.isFloat(x) && x.precision === p
  if (spec.kind === "utf8") {
    expect(arrow.DataType.isUtf8(t) || arrow.DataType.isLargeUtf8(t), "utf8")
    return Array.from({ length: rows }, (_, i) => vector.get(i) as string | null)
  }
  const Ctor = spec.kind === "int32" ? Int32Array : spec.kind === "float64" ? Float64Array : Float32Array
  const width = spec.kind === "tensor" ? (field.type as arrow.FixedSizeList).listSize : 1
  if (spec.kind === "tensor") {
    expect(
      arrow.DataType.isFixedSizeList(t) && isFloat(t.children[0].type, arrow.Precision.SINGLE),
      "a fixed-size list of float32"
    )
  } else expect(spec.kind === "int32" ? isInt32(t) : isFloat(t, arrow.Precision.DOUBLE), spec.kind)
  const values = new Ctor(rows * width)
  const valid = new Uint8Array(rows)
  let offset = 0
  let nulls = 0
  for (const chunk of vector.data) {
    const leaf = spec.kind === "tensor" ? chunk.children[0] : chunk
    // arrow-js slices value buffers with the data, so a chunk's values always start at index 0.
    values.set((leaf.values as Float32Array).subarray(0, chunk.length * width) as never, offset * width)
    for (let i = 0; i < chunk.length; i++) {
      const ok = chunk.getValid(i)
      valid[offset + i] = ok ? 1 : 0
      if (!ok) nulls++
    }
    offset += chunk.length
  }
  if (nulls === 0) return values
  if (!spec.nullable) throw new Error(`${source}: column "${field.name}" holds ${nulls} nulls but is not nullable`)
  if (nulls === rows) return null
  return { values, valid }
}
