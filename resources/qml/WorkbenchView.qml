import QtQuick
import QtQuick.Controls
import QtQuick.Dialogs
import QtQuick.Layouts

Item {
    id: view
    objectName: "workbenchView"

    FileDialog {
        id: openDialog
        objectName: "openDialog"
        title: "Open input for " + workbench.kernel
        fileMode: FileDialog.OpenFile
        nameFilters: workbench.inputFilters
        onAccepted: workbench.openFile(selectedFile)
    }
    FileDialog {
        id: saveDialog
        objectName: "saveDialog"
        title: "Save result"
        fileMode: FileDialog.SaveFile
        defaultSuffix: workbench.resultSuffix.replace(".", "")
        onAccepted: workbench.saveResult(selectedFile)
    }

    RowLayout {
        anchors.fill: parent
        anchors.margins: 10
        spacing: 12

        // Left: the kernel list and the parameter form generated from the manifest.
        ColumnLayout {
            Layout.preferredWidth: 320
            Layout.maximumWidth: 360
            Layout.fillHeight: true
            spacing: 6

            Label { text: "Kernel"; font.bold: true }
            ComboBox {
                id: kernelBox
                objectName: "kernelPicker"
                Accessible.name: "Kernel"
                Layout.fillWidth: true
                model: workbench.kernels
                textRole: "name"
                enabled: !workbench.running
                currentIndex: {
                    for (let i = 0; i < workbench.kernels.count; ++i)
                        if (workbench.kernels.get(i).name === workbench.kernel) return i
                    return -1
                }
                onActivated: workbench.selectKernel(currentText)
            }
            Label {
                objectName: "kernelDescription"
                text: workbench.kernelDescription
                wrapMode: Text.Wrap
                maximumLineCount: 4
                elide: Text.ElideRight
                opacity: 0.8
                Layout.fillWidth: true
                HoverHandler { id: descHover }
                ToolTip.visible: descHover.hovered && truncated
                ToolTip.text: workbench.kernelDescription
            }
            Label { text: "Parameters"; font.bold: true; Layout.topMargin: 6 }
            ScrollView {
                Layout.fillWidth: true
                Layout.fillHeight: true
                clip: true
                ListView {
                    id: paramList
                    objectName: "paramForm"
                    Accessible.name: "Parameters"
                    model: workbench.paramModel
                    spacing: 8
                    delegate: ParamField {
                        width: paramList.width - 14
                        onEdited: (v) => workbench.setParam(name, v)
                    }
                }
            }
        }

        // Right: input, where, run, progress, result.
        ColumnLayout {
            Layout.fillWidth: true
            Layout.fillHeight: true
            spacing: 8

            RowLayout {
                Layout.fillWidth: true
                Button {
                    objectName: "openButton"
                    text: "Open input\u2026"
                    Accessible.name: "Open input file"
                    enabled: workbench.needsInput && !workbench.running
                    onClicked: openDialog.open()
                }
                Button {
                    objectName: "useResultButton"
                    text: "Use result as input"
                    Accessible.name: "Use the result as input"
                    visible: workbench.inputKind === "rgba8" && workbench.resultKind === "image"
                    enabled: !workbench.running
                    onClicked: workbench.useResultAsInput()
                }
                Label {
                    objectName: "inputSummary"
                    Layout.fillWidth: true
                    elide: Text.ElideMiddle
                    text: workbench.kernel === "" ? "No kernel selected."
                        : !workbench.needsInput ? "This kernel generates its data from the parameters."
                        : workbench.loading ? "Loading " + workbench.loadingInput + "\u2026"
                        : workbench.inputSummary !== "" ? workbench.inputSummary
                        : "No input yet: open a file or drop one below."
                }
            }

            DropArea {
                id: drop
                objectName: "dropArea"
                Layout.fillWidth: true
                Layout.fillHeight: true
                Layout.minimumHeight: 160
                // (not `enabled`: that would also grey out the result shown inside)
                readonly property bool accepting: workbench.needsInput && !workbench.running
                onEntered: (drag) => { drag.accepted = accepting }
                onDropped: (event) => {
                    if (accepting && event.hasUrls && event.urls.length > 0) {
                        workbench.openFile(event.urls[0])
                        event.acceptProposedAction()
                    }
                }
                Rectangle {
                    anchors.fill: parent
                    color: drop.containsDrag ? palette.highlight : palette.base
                    opacity: drop.containsDrag ? 0.3 : 1
                    border.color: palette.mid
                    radius: 4
                }
                RowLayout {
                    anchors.fill: parent
                    anchors.margins: 8
                    spacing: 8
                    Pane {
                        Layout.fillWidth: true
                        Layout.fillHeight: true
                        visible: workbench.inputImage !== ""
                        padding: 0
                        background: null
                        Image {
                            objectName: "inputPreview"
                            anchors.fill: parent
                            // decoded at the shown size once, not scaled on every frame
                            sourceSize.width: Math.max(1, width)
                            sourceSize.height: Math.max(1, height)
                            source: workbench.inputImage
                            fillMode: Image.PreserveAspectFit
                            cache: false
                            asynchronous: false
                            Accessible.name: "Input preview"
                        }
                        Label { text: "Input"; opacity: 0.7; anchors.left: parent.left; anchors.top: parent.top }
                    }
                    Pane {
                        Layout.fillWidth: true
                        Layout.fillHeight: true
                        padding: 0
                        background: null
                        Image {
                            objectName: "resultPreview"
                            anchors.fill: parent
                            // decoded at the shown size once, not scaled on every frame
                            sourceSize.width: Math.max(1, width)
                            sourceSize.height: Math.max(1, height)
                            visible: workbench.resultKind === "image"
                            source: workbench.resultImage
                            fillMode: Image.PreserveAspectFit
                            cache: false
                            asynchronous: false
                            Accessible.name: "Result preview"
                        }
                        ScrollView {
                            anchors.fill: parent
                            visible: workbench.resultKind !== "" && workbench.resultKind !== "image"
                            TextArea {
                                objectName: "resultText"
                                readOnly: true
                                text: workbench.resultText
                                font.family: "monospace"
                                wrapMode: TextEdit.Wrap
                                Accessible.name: "Result"
                                background: null
                            }
                        }
                        Label {
                            anchors.centerIn: parent
                            visible: workbench.resultKind === "" && workbench.inputImage === ""
                            horizontalAlignment: Text.AlignHCenter
                            opacity: 0.6
                            text: workbench.needsInput ? "Drop a file here\n(" + workbench.inputFilters.join(", ") + ")"
                                                       : "Press Run (Ctrl+R) to generate"
                        }
                        Label {
                            objectName: "resultCaption"
                            text: workbench.resultKind === "image" ? "Result: " + workbench.resultText : "Result"
                            opacity: 0.7
                            visible: workbench.resultKind !== ""
                            anchors.right: parent.right; anchors.top: parent.top
                        }
                    }
                }
            }

            RowLayout {
                Layout.fillWidth: true
                spacing: 8
                Label { text: "Where:" }
                Repeater {
                    model: workbench.routes
                    RadioButton {
                        objectName: "where_" + modelData.name
                        text: modelData.label
                        Accessible.name: "Run " + modelData.label
                        checked: workbench.where === modelData.name
                        enabled: !workbench.running
                        onClicked: workbench.setWhere(modelData.name)
                    }
                }
                Item { Layout.fillWidth: true }
                Button {
                    objectName: "runButton"
                    text: "Run (Ctrl+R)"
                    Accessible.name: "Run kernel"
                    highlighted: true
                    enabled: !workbench.running && workbench.kernel !== ""
                    onClicked: workbench.run()
                }
                Button {
                    objectName: "cancelButton"
                    text: "Cancel (Esc)"
                    Accessible.name: "Cancel job"
                    enabled: workbench.running
                    onClicked: workbench.cancel()
                }
                Button {
                    objectName: "saveButton"
                    text: "Save as\u2026"
                    Accessible.name: "Save result as"
                    enabled: workbench.resultKind !== "" && !workbench.running
                    onClicked: saveDialog.open()
                }
            }
            ProgressBar {
                objectName: "progressBar"
                Accessible.name: "Progress"
                Layout.fillWidth: true
                from: 0; to: 1
                value: workbench.progress
                indeterminate: workbench.running && workbench.progress === 0
                visible: workbench.running
            }
            Label {
                objectName: "resultInfo"
                text: workbench.resultInfo
                visible: text !== ""
                wrapMode: Text.Wrap
                Layout.fillWidth: true
            }
        }
    }
}
