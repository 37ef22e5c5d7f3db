pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts

// One parameter of the selected kernel, as the manifest describes it (type, range, default).
ColumnLayout {
    id: field
    required property string name
    required property string type
    required property var min
    required property var max
    required property var value
    required property var choices
    required property string description
    required property bool fromInput
    signal edited(var value)
    spacing: 2

    function rangeText() {
        if (type === "enum") return ""
        const lo = min > -1e300 ? Number(min).toLocaleString(Qt.locale("C"), "g", 6) : "-\u221e"
        const hi = max < 1e300 ? Number(max).toLocaleString(Qt.locale("C"), "g", 6) : "\u221e"
        return lo + " \u2013 " + hi
    }

    RowLayout {
        Layout.fillWidth: true
        Label {
            text: field.name
            font.bold: true
            Layout.fillWidth: true
            elide: Text.ElideRight
        }
        Label {
            text: field.fromInput ? "from input" : field.rangeText()
            opacity: 0.7
            font.pixelSize: 11
        }
    }
    Loader {
        Layout.fillWidth: true
        sourceComponent: field.type === "enum" ? enumEditor : field.type === "int" ? intEditor : floatEditor
    }
    Label {
        visible: field.description !== ""
        text: field.description
        opacity: 0.7
        font.pixelSize: 11
        wrapMode: Text.Wrap
        Layout.fillWidth: true
    }

    Component {
        id: intEditor
        SpinBox {
            objectName: "param_" + field.name
            Accessible.name: field.name
            enabled: !field.fromInput
            editable: true
            from: Math.max(field.min, -2147483647)
            to: Math.min(field.max, 2147483647)
            value: field.value
            stepSize: 1
            onValueModified: field.edited(value)
        }
    }
    Component {
        id: floatEditor
        TextField {
            objectName: "param_" + field.name
            Accessible.name: field.name
            enabled: !field.fromInput
            text: String(field.value)
            selectByMouse: true
            validator: DoubleValidator { bottom: field.min; top: field.max; notation: DoubleValidator.ScientificNotation; locale: "C" }
            color: acceptableInput ? palette.text : "#c0392b"
            onEditingFinished: if (acceptableInput) field.edited(Number(text))
        }
    }
    Component {
        id: enumEditor
        ComboBox {
            objectName: "param_" + field.name
            Accessible.name: field.name
            model: field.choices
            currentIndex: Math.max(0, field.choices.indexOf(field.value))
            onActivated: field.edited(currentText)
        }
    }
}
